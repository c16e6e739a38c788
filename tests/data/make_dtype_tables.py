#!/usr/bin/env python3
"""Reference decode tables for F16, BF16, F8_E4M3, F8_E5M2 -> f32 bit patterns.

Output: dtype_tables.bin.zlib = zlib.compress(level 9) of little-endian u32 words:
  F16 (65536) | BF16 (65536) | F8_E4M3 (256) | F8_E5M2 (256)  = 131584 words.
"""
import os
import zlib

import ml_dtypes
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def table(bits, dt):
    return bits.view(dt).astype(np.float32).view(np.uint32)


def main():
    u16 = np.arange(65536, dtype=np.uint16)
    u8 = np.arange(256, dtype=np.uint8)
    parts = [
        table(u16, np.float16),
        table(u16, ml_dtypes.bfloat16),
        table(u8, ml_dtypes.float8_e4m3fn),
        table(u8, ml_dtypes.float8_e5m2),
    ]
    words = np.concatenate(parts).astype("<u4")
    assert words.size == 131584
    raw = words.tobytes()
    comp = zlib.compress(raw, 9)
    out = os.path.join(HERE, "dtype_tables.bin.zlib")
    with open(out, "wb") as f:
        f.write(comp)
    print(f"wrote {out}: {len(comp)} bytes compressed ({len(raw)} raw)")


if __name__ == "__main__":
    main()
