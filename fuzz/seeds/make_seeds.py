#!/usr/bin/env python3
"""Writes the fuzz seed corpora (each file < 2 KB) into seeds/header and seeds/structured.

seeds/header serves both the `header` and the `render` target (both take a whole
safetensors file). seeds/structured holds fixed pseudo-random byte strings: the
`structured` target decodes any bytes into a well-formed file, so these only give it a
spread of sizes to start from. Run from anywhere: python3 fuzz/seeds/make_seeds.py
"""
import json
import math
import os
import random
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = os.path.join(HERE, "header")
STRUCTURED = os.path.join(HERE, "structured")


def st_file(tensors, metadata=None, pad_to=8, order=None, raw_header=None):
    """tensors: list of (name, dtype, shape, bytes), laid out in list order."""
    entries, data, off = {}, b"", 0
    for name, dtype, shape, b in tensors:
        entries[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(b)]}
        data += b
        off += len(b)
    obj = {}
    if metadata is not None:
        obj["__metadata__"] = metadata
    names = order or list(entries)
    for n in names:
        obj[n] = entries[n]
    header = raw_header if raw_header is not None else json.dumps(obj, separators=(",", ":")).encode()
    if pad_to:
        header += b" " * (-len(header) % pad_to)
    return struct.pack("<Q", len(header)) + header + data


def f32(vals):
    return struct.pack("<%df" % len(vals), *vals)


def write(folder, name, b):
    assert len(b) < 2048, (name, len(b))
    with open(os.path.join(folder, name), "wb") as f:
        f.write(b)


def header_seeds():
    os.makedirs(HEADER, exist_ok=True)
    w = lambda name, b: write(HEADER, name, b)
    grad = [(i - 2.5) / 3 + j / 5 for i in range(6) for j in range(8)]
    # --- valid
    w("valid_f32_6x8.safetensors", st_file([("w", "F32", [6, 8], f32(grad))]))
    w("valid_mixed.safetensors", st_file([
        ("a.f16", "F16", [3, 4], struct.pack("<12e", *[x / 4 for x in range(-6, 6)])),
        ("b.bf16", "BF16", [2, 2], b"\x80\x3f\x00\xc0\x00\x00\x80\x7f"),
        ("c.i8", "I8", [5], bytes([0x80, 0xff, 0, 1, 0x7f])),
        ("d.u8", "U8", [], b"\x07"),
        ("e.bool", "BOOL", [2, 2], b"\x00\x01\x02\x00"),
        ("f.e4m3", "F8_E4M3", [4], b"\x7e\x7f\x01\x80"),
        ("g.e5m2", "F8_E5M2", [4], b"\x7c\xfc\x7d\x3c"),
        ("h.e8m0", "F8_E8M0", [2], b"\x7f\xff"),
        ("i.i16", "I16", [2], struct.pack("<2h", -300, 300)),
        ("j.u16", "U16", [2], struct.pack("<2H", 0, 65535)),
        ("k.i32", "I32", [2], struct.pack("<2i", -7, 7)),
        ("l.u32", "U32", [1, 1], struct.pack("<I", 1 << 24)),
        ("m.f64", "F64", [2], struct.pack("<2d", 0.5, 1e300)),
        ("n.i64", "I64", [1], struct.pack("<q", -5)),
        ("o.u64", "U64", [1], struct.pack("<Q", 1 << 40)),
    ], metadata={"format": "pt"}))
    w("valid_special_f32.safetensors", st_file([("s", "F32", [3, 3], f32([
        math.nan, math.inf, -math.inf, -0.0, 0.0, 1e-45, 3.4e38, -3.4e38, 1.0]))]))
    w("valid_all_nan.safetensors", st_file([("n", "F32", [2, 2], f32([math.nan] * 4))]))
    w("valid_empty_and_unknown.safetensors", st_file([
        ("empty", "F32", [0, 3], b""),
        ("also_empty", "I64", [4, 0, 2], b""),
        ("c64", "C64", [1], b"\x00" * 8),
        ("weird", "X_UNKNOWN", [3], b"abc"),
        ("ok", "U8", [3], b"\x01\x02\x03"),
    ]))
    w("valid_no_tensors.safetensors", st_file([]))
    w("valid_only_metadata.safetensors", st_file([], metadata={"a": "b"}))
    w("valid_unaligned_header.safetensors", st_file([("u", "F32", [2], f32([1.5, -2]))], pad_to=0,
                                                    metadata={"x": "yz"}))
    w("valid_names.safetensors", st_file([
        ("../../etc/passwd", "U8", [1], b"\x01"),
        ("a/b", "U8", [1], b"\x02"),
        ("a_b", "U8", [1], b"\x03"),
        ("CON", "U8", [1], b"\x04"),
        (".hidden", "U8", [1], b"\x05"),
        ("", "U8", [1], b"\x06"),
        ("x" * 300, "U8", [1], b"\x07"),
        ("\u00fcn\u00ef\n\u0000", "U8", [1], b"\x08"),
    ]))
    w("valid_rank4_shuffled.safetensors", st_file([
        ("z", "F16", [2, 1, 3, 2], struct.pack("<12e", *range(12))),
        ("a", "I8", [1, 1, 1, 1], b"\x05"),
    ], order=["a", "z"]))
    w("valid_wide_1d.safetensors", st_file([("v", "U8", [600], bytes(range(256)) * 2 + bytes(88))]))
    # --- invalid
    w("bad_short.safetensors", b"\x05\x00\x00\x00\x00")
    w("bad_len_huge.safetensors", b"\xff" * 8 + b"{}")
    w("bad_len_past_end.safetensors", struct.pack("<Q", 100) + b"{}")
    w("bad_not_json.safetensors", struct.pack("<Q", 8) + b"{nope!!}")
    w("bad_not_utf8.safetensors", struct.pack("<Q", 4) + b"{\xff\xfe}")
    w("bad_array.safetensors", struct.pack("<Q", 2) + b"[]")
    w("bad_gap.safetensors", st_file([], raw_header=b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}') + b"\x00\x00")
    w("bad_overlap.safetensors", st_file([], raw_header=b'{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},'
                                         b'"b":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}') + b"\x00\x00")
    w("bad_reversed.safetensors", st_file([], raw_header=b'{"a":{"dtype":"U8","shape":[0],"data_offsets":[2,0]}}') + b"\x00\x00")
    w("bad_size.safetensors", st_file([("a", "F32", [3], f32([1, 2]))]))
    w("bad_trailing.safetensors", st_file([("a", "U8", [1], b"\x01")]) + b"\x00")
    w("bad_dup_key.safetensors", st_file([], raw_header=b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                                         b'"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}') + b"\x01")
    w("bad_metadata_value.safetensors", st_file([], raw_header=b'{"__metadata__":{"k":1}}'))
    w("bad_shape_overflow.safetensors", st_file([], raw_header=b'{"a":{"dtype":"U8","shape":[4294967296,4294967296,2],"data_offsets":[0,0]}}'))
    w("bad_negative.safetensors", st_file([], raw_header=b'{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}}'))
    w("bad_dtype_type.safetensors", st_file([], raw_header=b'{"a":{"dtype":7,"shape":[1],"data_offsets":[0,1]}}') + b"\x00")
    w("bad_offsets_three.safetensors", st_file([], raw_header=b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}}') + b"\x00")
    w("bad_deep_nesting.safetensors", st_file([], raw_header=b'{"a":' + b"[" * 200 + b"]" * 200 + b"}"))


def structured_seeds():
    os.makedirs(STRUCTURED, exist_ok=True)
    rng = random.Random(20240601)
    for n in (16, 64, 200, 512, 1024, 1900):
        write(STRUCTURED, "random_%04d.bin" % n, bytes(rng.randrange(256) for _ in range(n)))


if __name__ == "__main__":
    header_seeds()
    structured_seeds()
