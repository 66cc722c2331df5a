#!/usr/bin/env python3
"""Generates the mkext2 benchmark tree: about 20,000 files / 500 MB.

Deterministic sizes (seeded), random contents. Usage: gen_tree.py DIR
"""
import os
import random
import sys

root = sys.argv[1]
rng = random.Random(20240601)
os.makedirs(root, exist_ok=True)
total = 0
n = 0
for d in range(200):
    dpath = os.path.join(root, f"dir{d:03d}")
    os.makedirs(dpath, exist_ok=True)
    for f in range(100):
        r = rng.random()
        if r < 0.90:
            size = rng.randint(1, 16 << 10)
        elif r < 0.999:
            size = rng.randint(50 << 10, 250 << 10)
        else:
            size = rng.randint(2 << 20, 5 << 20)
        with open(os.path.join(dpath, f"file{f:03d}.bin"), "wb") as fh:
            fh.write(os.urandom(size))
        total += size
        n += 1
print(f"{n} files, {total} bytes")
