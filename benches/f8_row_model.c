// A model of the AVX-512 F8_E4M3 `mean` kernel's row loop at `--max-size 256`, to
// estimate the most a Rust version of it can reach against the read ceiling
// (docs/performance.md). Not part of the build; compile and run by hand:
//
//   gcc -O3 -pthread -mavx512{f,bw,dq,vbmi} -mfma benches/f8_row_model.c -lm -o /tmp/f8m
//   /tmp/f8m model.safetensors 9 [SHAPES]          # pages mapped per run, as a render
//   ONCE=1 /tmp/f8m model.safetensors 9 [SHAPES]   # one map, pages already mapped
//   MODE=1 /tmp/f8m ...   # without the squares' four FMAs: how much the arithmetic costs
//   MODE=2 /tmp/f8m ...   # the access pattern alone: each row's chunk loaded and added
//
// SHAPES lists the file's 2-D tensors, one "offset rows cols" line each (offset: of the
// tensor's first byte in the file), for example from the header with
//
//   python3 -c 'import json,struct,sys; f=open(sys.argv[1],"rb"); n=struct.unpack("<Q",
//     f.read(8))[0]; [print(8+n+v["data_offsets"][0], *v["shape"]) for k, v in
//     json.loads(f.read(n)).items() if k != "__metadata__" and len(v["shape"]) == 2]' FILE
//
// Each tensor is cut into bands of ceil(rows / 256) rows, and each thread takes half of
// every tensor's bands. Without SHAPES, the file's bytes from offset 8192 are read as
// rows of 4096 columns in bands of 16 (the 4096-wide layers' layout). A band is read as
// the kernel reads it: in groups of up to 32 rows, each 64-byte chunk down the group's
// rows, starting from the chunk at the page boundary of the group's first row (bands of
// 16 rows or more), prefetching max(64 / rows, 4) chunks ahead, with the kernel's per-row
// instructions (zero count, two code extremes, two table lookups, unpack, split, sums,
// squares). Per chunk it only adds the four sum vectors to cells in memory and moves the
// squares to f64: no fold into cells, no cell values, colours or PNG, no unmapping. It
// prints the median rates of it and of a parallel u64 sum over the same bytes and the
// same kind of map (alternating), and their ratio.
#include <fcntl.h>
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { COLS = 4096, BH = 16, GROUP = 32, AHEAD = 4, AHEAD_ROWS = 64, PAGE = 4096, THREADS = 2 };

static size_t flen;
static int fd;
static __m512i lut[4];
// Read after the runs, so that the compiler keeps every result.
static volatile double sink[THREADS];

// One band: `rows` rows of `cols` F8 codes (`cols` a multiple of 64), at `at` bytes into
// the file.
typedef struct {
    size_t at, rows, cols;
} Band;

// The bands (or, for the ceiling, the bytes) one thread takes.
typedef struct {
    const uint8_t *map;
    const Band *bands;
    size_t n;
    size_t from, to;
    int id;
} Job;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

// The chunk a group of rows starting at `row` takes first: as in the kernel, the first one
// at or after the page boundary in that row (bands of at least half a group of rows).
static size_t first_chunk(const uint8_t *row, size_t rows, size_t cols) {
    size_t to_page = (PAGE - (uintptr_t)row % PAGE) % PAGE;
    size_t first = (to_page + 63) / 64;
    return rows >= GROUP / 2 && to_page < cols && first < cols / 64 ? first : 0;
}

// 0: the kernel's arithmetic; 1: without the squares; 2: loads and one add only.
static int mode;

static void *kernel(void *arg) {
    const Job *j = arg;
    const __m512i low7 = _mm512_set1_epi8(0x7f), sign = _mm512_set1_epi8(-128);
    const __m512i ones = _mm512_set1_epi8(-1), high16 = _mm512_set1_epi32(-65536);
    __m512i zeros = _mm512_setzero_si512(), smax = _mm512_set1_epi8(-128);
    __m512i umax = _mm512_setzero_si512();
    __m512 d2[4];
    for (int u = 0; u < 4; u++) d2[u] = _mm512_setzero_ps();
    __m512d s2 = _mm512_setzero_pd();
    size_t widest = 0;
    for (size_t i = 0; i < j->n; i++) widest = j->bands[i].cols > widest ? j->bands[i].cols : widest;
    __m512 *cells = aligned_alloc(64, (widest / 64 * 4 + 1) * sizeof(__m512));
    memset(cells, 0, (widest / 64 * 4 + 1) * sizeof(__m512));
    for (size_t i = 0; i < j->n; i++) {
        const Band *b = &j->bands[i];
        const uint8_t *data = j->map + b->at;
        size_t nch = b->cols / 64;
        for (size_t g0 = 0, g; g0 < b->rows; g0 += g) {
            g = b->rows - g0 < GROUP ? b->rows - g0 : GROUP;
            size_t split = first_chunk(data + g0 * b->cols, b->rows, b->cols);
            size_t next = first_chunk(data + (g0 + g) * b->cols, b->rows, b->cols);
            size_t steps = AHEAD_ROWS / g > AHEAD ? AHEAD_ROWS / g : AHEAD;
            for (size_t k = 0; k < nch; k++) {
                size_t c = (k + split) % nch;
                __m512 sum[4];
                for (int u = 0; u < 4; u++) sum[u] = _mm512_setzero_ps();
                const uint8_t *p = data + g0 * b->cols + c * 64;
                // Prefetch the chunk `steps` ahead in this order, into the next group.
                const uint8_t *q = k + steps < nch
                    ? data + g0 * b->cols + (k + steps + split) % nch * 64
                    : data + (g0 + g) * b->cols + (k + steps - nch + next) % nch * 64;
                for (size_t r = 0; r < g; r++, p += b->cols, q += b->cols) {
                    _mm_prefetch((const char *)q, _MM_HINT_T0);
                    __m512i raw = _mm512_loadu_si512(p);
                    if (mode == 2) {
                        sum[0] = _mm512_castsi512_ps(_mm512_add_epi64(_mm512_castps_si512(sum[0]), raw));
                        continue;
                    }
                    zeros = _mm512_mask_sub_epi8(zeros, _mm512_testn_epi8_mask(raw, low7), zeros, ones);
                    smax = _mm512_max_epi8(smax, raw);
                    umax = _mm512_max_epu8(umax, raw);
                    __m512i lo = _mm512_permutex2var_epi8(lut[0], raw, lut[1]);
                    __m512i hi = _mm512_permutex2var_epi8(lut[2], raw, lut[3]);
                    hi = _mm512_ternarylogic_epi32(hi, raw, sign, 0xf8);
                    __m512i wa = _mm512_unpacklo_epi8(lo, hi), wb = _mm512_unpackhi_epi8(lo, hi);
                    __m512 x[4] = {
                        _mm512_castsi512_ps(_mm512_slli_epi32(wa, 16)),
                        _mm512_castsi512_ps(_mm512_and_si512(wa, high16)),
                        _mm512_castsi512_ps(_mm512_slli_epi32(wb, 16)),
                        _mm512_castsi512_ps(_mm512_and_si512(wb, high16)),
                    };
                    for (int u = 0; u < 4; u++) {
                        sum[u] = _mm512_add_ps(sum[u], x[u]);
                        if (mode != 1) d2[u] = _mm512_fmadd_ps(x[u], x[u], d2[u]);
                    }
                }
                for (int u = 0; u < 4; u++) {
                    cells[c * 4 + u] = _mm512_add_ps(cells[c * 4 + u], sum[u]);
                    __m256 lo = _mm512_castps512_ps256(d2[u]);
                    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(d2[u]), 1));
                    s2 = _mm512_add_pd(s2, _mm512_add_pd(_mm512_cvtps_pd(lo), _mm512_cvtps_pd(hi)));
                    d2[u] = _mm512_setzero_ps();
                }
            }
        }
    }
    __m512 t = _mm512_setzero_ps();
    for (size_t c = 0; c < widest / 64 * 4; c++) t = _mm512_add_ps(t, cells[c]);
    free(cells);
    __m512i z = _mm512_sad_epu8(zeros, _mm512_setzero_si512());
    sink[j->id] = _mm512_reduce_add_ps(t) + _mm512_reduce_add_pd(s2) + _mm512_reduce_add_epi64(z) +
                  _mm512_reduce_max_epi32(smax) + _mm512_reduce_max_epi32(umax);
    return NULL;
}

static void *ceiling(void *arg) {
    const Job *j = arg;
    const uint64_t *w = (const uint64_t *)(j->map + j->from);
    uint64_t s = 0;
    for (size_t i = 0; i < (j->to - j->from) / 8; i++) s += w[i];
    sink[j->id] = (double)s;
    return NULL;
}

static Band *lists[THREADS];
static size_t counts[THREADS];
// The bytes the bands cover, which the ceiling reads.
static size_t lo = SIZE_MAX, hi, band_bytes;

// Gives each thread its share of a tensor's bands, as rayon splits them in halves.
static void add_tensor(size_t at, size_t rows, size_t cols, size_t bh) {
    size_t nb = (rows + bh - 1) / bh;
    for (int t = 0; t < THREADS; t++) {
        for (size_t i = nb * t / THREADS; i < nb * (t + 1) / THREADS; i++) {
            size_t r = rows - i * bh < bh ? rows - i * bh : bh;
            lists[t] = realloc(lists[t], (counts[t] + 1) * sizeof(Band));
            lists[t][counts[t]++] = (Band){at + i * bh * cols, r, cols};
        }
    }
    lo = at < lo ? at : lo;
    hi = at + rows * cols > hi ? at + rows * cols : hi;
    band_bytes += rows * cols;
}

// Seconds for one pass of `work` on two threads.
static double run(void *(*work)(void *)) {
    static uint8_t *kept;
    uint8_t *map = kept ? kept : mmap(NULL, flen, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    if (getenv("ONCE")) kept = map;
    pthread_t th[THREADS];
    Job jobs[THREADS];
    size_t half = (hi - lo) / THREADS / 8 * 8;
    double t0 = now();
    for (int i = 0; i < THREADS; i++) {
        size_t to = i == THREADS - 1 ? lo + (hi - lo) / 8 * 8 : lo + (i + 1) * half;
        jobs[i] = (Job){map, lists[i], counts[i], lo + i * half, to, i};
        pthread_create(&th[i], NULL, work, &jobs[i]);
    }
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    double t = now() - t0;
    if (!kept) munmap(map, flen);
    return t;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: %s FILE RUNS [SHAPES]\n", argv[0]);
        return 2;
    }
    int runs = atoi(argv[2]);
    mode = getenv("MODE") ? atoi(getenv("MODE")) : 0;
    fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || runs < 1 || runs > 99 || st.st_size < 8192 + THREADS * BH * COLS) {
        fprintf(stderr, "cannot read %s, or RUNS not in 1..99\n", argv[1]);
        return 1;
    }
    flen = st.st_size;
    if (argc == 4) {
        FILE *f = fopen(argv[3], "r");
        size_t at, rows, cols;
        while (f && fscanf(f, "%zu %zu %zu", &at, &rows, &cols) == 3) {
            if (cols % 64 == 0 && at + rows * cols <= flen) add_tensor(at, rows, cols, (rows + 255) / 256);
        }
        if (!f || band_bytes == 0) {
            fprintf(stderr, "no usable tensor in %s\n", argv[3]);
            return 1;
        }
        fclose(f);
    } else {
        size_t rows = (flen - 8192) / (BH * COLS) * BH;
        add_tensor(8192, rows, COLS, BH);
    }
    // The low and high bytes of each 7-bit magnitude's BF16 value (code 127 is NaN).
    uint8_t t[4][64];
    for (int i = 0; i < 128; i++) {
        int e = i >> 3, m = i & 7;
        float v = i == 127 ? NAN : e ? ldexpf(1.0f + m / 8.0f, e - 7) : ldexpf(m / 8.0f, -6);
        uint32_t bits;
        memcpy(&bits, &v, 4);
        t[i / 64][i % 64] = (bits >> 16) & 0xff;
        t[2 + i / 64][i % 64] = bits >> 24;
    }
    for (int i = 0; i < 4; i++) lut[i] = _mm512_loadu_si512(t[i]);
    double c[99], k[99];
    run(ceiling);  // Warm the page cache.
    for (int r = 0; r < runs; r++) {
        c[r] = run(ceiling);
        k[r] = run(kernel);
    }
    qsort(c, runs, sizeof c[0], by_value);
    qsort(k, runs, sizeof k[0], by_value);
    double ceil_rate = (hi - lo) / c[runs / 2] / 1e9, model_rate = band_bytes / k[runs / 2] / 1e9;
    printf("read ceiling %.2f GB/s, row-loop model %.2f GB/s, ratio %.3f\n", ceil_rate, model_rate,
           model_rate / ceil_rate);
    return 0;
}
