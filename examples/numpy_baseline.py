"""The script a researcher would write instead of tensorheat, for a speed comparison.

    pip install safetensors numpy ml_dtypes matplotlib pillow
    python examples/numpy_baseline.py MODEL.safetensors OUT_DIR [--max-size 1024]

For every tensor: load it with safetensors' numpy API, convert to float32, view as
rows x cols, block-mean (nanmean over finite values) into at most 1024 x 1024 cells with
the same integer block sizes as tensorheat, colour with matplotlib's RdBu_r over the
symmetric 99.5th percentile of |cell| and write a PNG with Pillow. It prints the time
taken; run `tensorheat render` on the same file to compare. Not used by the test suite.
"""

import argparse
import json
import os
import time

import ml_dtypes  # noqa: F401  (registers bfloat16 / float8 with numpy)
import numpy as np
from matplotlib import colormaps
from PIL import Image
from safetensors import safe_open

# safetensors' numpy loader looks these names up on numpy itself.
np.bfloat16 = ml_dtypes.bfloat16
np.float8_e4m3fn = ml_dtypes.float8_e4m3fn
np.float8_e5m2 = ml_dtypes.float8_e5m2


def block_mean(x, max_h, max_w):
    rows = int(np.prod(x.shape[:-1])) if x.ndim > 1 else 1
    cols = x.shape[-1] if x.ndim > 0 else 1
    m = x.reshape(rows, cols)
    bh, bw = -(-rows // max_h), -(-cols // max_w)
    gh, gw = -(-rows // bh), -(-cols // bw)
    padded = np.full((gh * bh, gw * bw), np.nan, dtype=np.float32)
    padded[:rows, :cols] = m
    padded[~np.isfinite(padded)] = np.nan
    with np.errstate(invalid="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(padded.reshape(gh, bh, gw, bw), axis=(1, 3))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--max-size", type=int, default=1024)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    lut = (colormaps["RdBu_r"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    t0 = time.perf_counter()
    manifest = []
    with safe_open(a.model, framework="numpy") as f:
        for name in f.keys():
            x = f.get_tensor(name).astype(np.float32)
            if x.size == 0:
                continue
            grid = block_mean(x, a.max_size, a.max_size)
            finite = np.abs(grid[np.isfinite(grid)])
            v = float(np.percentile(finite, 99.5)) if finite.size else 1.0
            t = np.clip((grid + v) / (2 * v if v > 0 else 1), 0, 1)
            idx = np.nan_to_num(np.minimum(t * 256, 255), nan=0).astype(np.uint8)
            Image.fromarray(lut[idx]).save(os.path.join(a.out, name + ".png"))
            manifest.append({"name": name, "shape": list(x.shape), "range": [-v, v]})
    with open(os.path.join(a.out, "manifest.json"), "w") as fh:
        json.dump(manifest, fh)
    print(f"numpy baseline: {len(manifest)} tensors in {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
