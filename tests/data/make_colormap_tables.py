#!/usr/bin/env python3
"""matplotlib's 256-entry colour tables, the reference for tensorheat's colormaps.

Output: colormaps.bin.zlib = zlib.compress(level 9) of 256 RGB triples (768 bytes) per
map, in the order of NAMES below (tests/colormaps.rs lists the same names), each as
matplotlib samples it for an 8-bit image: `cmap(np.arange(256), bytes=True)`. Each
channel is stored as differences from the entry before (mod 256; the first from 0),
which compresses five times better than the colours themselves.
Made with matplotlib 3.11.2.
"""
import os
import zlib

import matplotlib
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

NAMES = [
    "viridis", "magma", "inferno", "plasma", "cividis", "turbo", "Greys", "Blues",
    "Greens", "Oranges", "Purples", "Reds", "YlOrRd", "YlGnBu", "RdBu", "RdYlBu",
    "RdYlGn", "Spectral", "BrBG", "PiYG", "PRGn", "PuOr", "RdGy",
]


def main():
    parts = []
    for name in NAMES:
        cmap = matplotlib.colormaps[name].resampled(256)
        rgb = cmap(np.arange(256), bytes=True)[:, :3].astype(np.uint8)
        assert rgb.shape == (256, 3), name
        delta = np.diff(rgb.astype(np.int16), axis=0, prepend=0) % 256
        parts.append(delta.astype(np.uint8).tobytes())
    raw = b"".join(parts)
    comp = zlib.compress(raw, 9)
    out = os.path.join(HERE, "colormaps.bin.zlib")
    with open(out, "wb") as f:
        f.write(comp)
    print(f"matplotlib {matplotlib.__version__}: wrote {out}: {len(comp)} bytes "
          f"compressed ({len(raw)} raw)")


if __name__ == "__main__":
    main()
