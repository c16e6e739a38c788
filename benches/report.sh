#!/usr/bin/env bash
# Reproduces the performance tables in the README (run on a quiet machine):
#   bash benches/report.sh [OUT_FILE]
# Ratios are measured side by side in one process (examples/throughput), medians of
# several alternating runs; the numpy comparison times both tools on the same file.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/dev/stdout}
cargo build --release --quiet --example throughput
cargo build --release --quiet
tp=target/release/examples/throughput
{
  echo "## machine"
  if command -v lscpu > /dev/null; then
    LC_ALL=C lscpu | grep -E '^(Model name|Model|CPU\(s\)|L2 cache|L3 cache):' || true
  fi
  if [ -r /proc/cpuinfo ]; then
    grep -m1 -E '^(cpu MHz|BogoMIPS)' /proc/cpuinfo || true
    for f in avx512f avx512bw avx512vbmi avx2 f16c; do
      grep -q -m1 -w "$f" /proc/cpuinfo && printf '%s ' "$f"
    done
    echo
  fi
  echo "## read-and-reduce path (--max-size 256), 2 GiB, LLM layer shapes"
  for d in bf16 f32 f16 f8; do $tp --gib 2 --dtype "$d" --max-size 256 --runs 5; done
  echo "## default options (1024x1024 grids, PNG encoding), 2 GiB"
  for d in bf16 f32 f16 f8; do $tp --gib 2 --dtype "$d" --runs 5; done
  echo "## layers only (no embedding), 2 GiB: --max-size 256, then default options"
  for d in bf16 f32 f16 f8; do $tp --gib 2 --dtype "$d" --no-embedding --max-size 256 --runs 5; done
  for d in bf16 f32 f16 f8; do $tp --gib 2 --dtype "$d" --no-embedding --runs 5; done
  echo "## the AVX2 kernels (TENSORHEAT_NO_AVX512=1), 2 GiB: --max-size 256, then default options"
  for d in bf16 f32 f16 f8; do TENSORHEAT_NO_AVX512=1 $tp --gib 2 --dtype "$d" --max-size 256 --runs 5; done
  for d in bf16 f32 f16 f8; do TENSORHEAT_NO_AVX512=1 $tp --gib 2 --dtype "$d" --runs 5; done
  echo "## smaller models (cells 1-3 columns wide), default options, 2 GiB"
  $tp --gib 2 --dtype bf16 --hidden 2048 --runs 5
  $tp --gib 2 --dtype f32 --hidden 768 --runs 5
  echo "## scaling, bf16, default options"
  for g in 0.5 1 2 4; do $tp --gib "$g" --runs 3; done
  echo "## memory: one 2 GiB bf16 tensor"
  $tp --gib 2 --single --runs 3
  if python3 -c "import safetensors, numpy, ml_dtypes, matplotlib, PIL" 2>/dev/null; then
    echo "## numpy + matplotlib baseline, 1 GiB bf16, same file"
    tmp=$(mktemp -d)
    $tp --gib 1 --runs 1 --keep "$tmp/model.safetensors" > /dev/null
    cat "$tmp/model.safetensors" > /dev/null # warm the page cache for both
    /usr/bin/time -f "tensorheat: %e s, max RSS %M KB" target/release/tensorheat render "$tmp/model.safetensors" -o "$tmp/th" -q
    /usr/bin/time -f "numpy: %e s, max RSS %M KB" python3 examples/numpy_baseline.py "$tmp/model.safetensors" "$tmp/np"
    rm -rf "$tmp"
  fi
} 2>&1 | tee "$out"
