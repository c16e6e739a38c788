// A model of the AVX-512 F8_E4M3 `mean` kernel's row loop, to estimate the most a Rust
// version of it can reach against the read ceiling on 4096-wide layers (README, "Where
// the speed comes from"). Not part of the build; compile and run by hand:
//
//   gcc -O3 -pthread -mavx512{f,bw,dq,vbmi} -mfma benches/f8_row_model.c -lm -o /tmp/f8m
//   /tmp/f8m model.safetensors 9          # pages mapped per run, as a render
//   ONCE=1 /tmp/f8m model.safetensors 9   # one map, pages already mapped
//
// It reads the file's bytes from offset 8192 as F8_E4M3 rows of 4096 columns in bands
// of 16 rows (the 4096-wide layers at `--max-size 256`, ignoring the header), on two
// threads that take half the bands each, in the kernel's order: each 64-byte chunk down
// the band's rows, prefetching 4 chunks ahead, with the kernel's per-row instructions
// (zero count, two code extremes, two table lookups, unpack, split, sums, squares). Per
// chunk it only adds the four sum vectors to cells in memory and moves the squares to
// f64: no fold into cells, no cell values, colours or PNG, no unmapping. It prints the
// median rates of it and of a parallel u64 sum over the same kind of map (alternating),
// and their ratio.
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

enum { COLS = 4096, BH = 16, NCH = COLS / 64, AHEAD = 4, THREADS = 2 };

static size_t flen;
static int fd;
static __m512i lut[4];
// Read after the runs, so that the compiler keeps every result.
static volatile double sink[THREADS];

typedef struct {
    const uint8_t *data;
    size_t bands;
    int id;
} Job;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void *kernel(void *arg) {
    const Job *j = arg;
    const __m512i low7 = _mm512_set1_epi8(0x7f), sign = _mm512_set1_epi8(-128);
    const __m512i ones = _mm512_set1_epi8(-1), high16 = _mm512_set1_epi32(-65536);
    __m512i zeros = _mm512_setzero_si512(), smax = _mm512_set1_epi8(-128);
    __m512i umax = _mm512_setzero_si512();
    __m512 d2[4];
    for (int u = 0; u < 4; u++) d2[u] = _mm512_setzero_ps();
    __m512d s2 = _mm512_setzero_pd();
    static __thread __m512 cells[NCH * 4];
    for (size_t b = 0; b < j->bands; b++) {
        const uint8_t *band = j->data + b * BH * COLS;
        for (size_t c = 0; c < NCH; c++) {
            __m512 sum[4];
            for (int u = 0; u < 4; u++) sum[u] = _mm512_setzero_ps();
            const uint8_t *p = band + c * 64;
            const uint8_t *q = c + AHEAD < NCH ? p + AHEAD * 64 : band + BH * COLS + (c + AHEAD - NCH) * 64;
            for (size_t r = 0; r < BH; r++, p += COLS, q += COLS) {
                _mm_prefetch((const char *)q, _MM_HINT_T0);
                __m512i raw = _mm512_loadu_si512(p);
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
                    d2[u] = _mm512_fmadd_ps(x[u], x[u], d2[u]);
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
    __m512 t = _mm512_setzero_ps();
    for (size_t c = 0; c < NCH * 4; c++) t = _mm512_add_ps(t, cells[c]);
    __m512i z = _mm512_sad_epu8(zeros, _mm512_setzero_si512());
    sink[j->id] = _mm512_reduce_add_ps(t) + _mm512_reduce_add_pd(s2) + _mm512_reduce_add_epi64(z) +
                  _mm512_reduce_max_epi32(smax) + _mm512_reduce_max_epi32(umax);
    return NULL;
}

static void *ceiling(void *arg) {
    const Job *j = arg;
    const uint64_t *w = (const uint64_t *)j->data;
    uint64_t s = 0;
    for (size_t i = 0; i < j->bands * BH * COLS / 8; i++) s += w[i];
    sink[j->id] = (double)s;
    return NULL;
}

// Seconds for one pass of `work` over the file on two threads.
static double run(void *(*work)(void *)) {
    static uint8_t *kept;
    uint8_t *map = kept ? kept : mmap(NULL, flen, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    if (getenv("ONCE")) kept = map;
    size_t bands = (flen - 8192) / (BH * COLS) / THREADS;
    pthread_t th[THREADS];
    Job jobs[THREADS];
    double t0 = now();
    for (int i = 0; i < THREADS; i++) {
        jobs[i] = (Job){map + 8192 + i * bands * BH * COLS, bands, i};
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
    if (argc != 3) {
        fprintf(stderr, "usage: %s FILE RUNS\n", argv[0]);
        return 2;
    }
    int runs = atoi(argv[2]);
    fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || runs < 1 || runs > 99 || st.st_size < 8192 + THREADS * BH * COLS) {
        fprintf(stderr, "cannot read %s, or RUNS not in 1..99\n", argv[1]);
        return 1;
    }
    flen = st.st_size;
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
    double cm = c[runs / 2], km = k[runs / 2];
    double bytes = (double)((flen - 8192) / (BH * COLS) / THREADS * THREADS * BH * COLS);
    printf("read ceiling %.2f GB/s, row-loop model %.2f GB/s, ratio %.3f\n", bytes / cm / 1e9,
           bytes / km / 1e9, cm / km);
    return 0;
}
