#!/usr/bin/env python3
"""Fetch notMNIST letters in fonts (outlier set `notmnist`) for flowpaint.

Source: github.com/davidflanagan/notMNIST-to-MNIST, the MNIST-format test
split t10k-images-idx3-ubyte.gz / t10k-labels-idx1-ubyte.gz: 10,000 glyphs of
the letters A-J (1,000 each) cut from publicly available fonts by Yaroslav
Bulatov, 28x28 grey. Written as 28x28 8-bit PNGs exactly as stored (mostly
light glyphs on a dark ground; some fonts are outlined or inverted); nothing
is inverted or resized. File names: LETTER_INDEX.png (a_00012.png ...).

  python get.py --from-mirror /path/to/notMNIST-to-MNIST.git
  python get.py                       # from raw.githubusercontent.com
  python get.py --limit 500 --out /tmp/notmnist

No committed sample: the data has no explicit licence of its own (see README).
"""
import gzip
import struct
import sys
from pathlib import Path

import numpy as np

# fetch.py, the plumbing all sets share, sits one folder up; get.py is run as a plain script.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import fetch  # noqa: E402

NAME = "notmnist"
REPO = "davidflanagan/notMNIST-to-MNIST"
COMMIT = "17823f4d4a3acd8317c07866702d2eb2ac79c7a0"
IMAGES = "t10k-images-idx3-ubyte.gz"
LABELS = "t10k-labels-idx1-ubyte.gz"
SOURCES = {
    IMAGES: "2c87c839a4ef9b238846600eec8c35b7",
    LABELS: "7ea9118cbafd0f6e3ee2ad771d782a01",
}


def load(mirrors):
    """The 10,000 idx records as (letter, record, get) items, grey values as stored."""
    src = fetch.Pinned(REPO, COMMIT, SOURCES, mirrors)
    raw = gzip.decompress(src.read(IMAGES))
    magic, n, rows, cols = struct.unpack(">IIII", raw[:16])
    if magic != 2051:
        sys.exit(f"get.py: {IMAGES} is not an idx3 image file")
    images = np.frombuffer(raw, np.uint8, offset=16).reshape(n, rows, cols)
    lab = gzip.decompress(src.read(LABELS))
    magic, m = struct.unpack(">II", lab[:8])
    if magic != 2049 or m != n:
        sys.exit(f"get.py: {LABELS} does not match {IMAGES}")
    labels = np.frombuffer(lab, np.uint8, offset=8)
    pairs = zip(labels, images, strict=True)
    return fetch.png_items(("abcdefghij"[label], image) for label, image in pairs)


if __name__ == "__main__":
    fetch.main(__doc__, load, name=NAME, repo=REPO, default_limit=2000, sample_n=300,
               sample_ok=False, style=fetch.SEEDED)    # no explicit data licence: no sample
