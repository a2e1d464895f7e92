#!/usr/bin/env python3
"""Fetch the USPS scanned ZIP-code digits as one PNG per digit.

Source: the "zip" data of The Elements of Statistical Learning (Hastie,
Tibshirani, Friedman), a copy of the USPS digits (Le Cun et al., 1990),
committed in github.com/dgkim5360/the-elements-of-statistical-learning-notebooks.
Each line of zip.train.gz / zip.test.gz is "label v1 .. v256" with values in
[-1, 1] (-1 = background, 1 = ink), row-major 16x16.  Values are mapped
linearly to 0..255 (v -> round((v + 1) * 127.5)), so the PNGs keep the stored
polarity: light ink on a dark background.  Nothing is resized or inverted.

Needs ../fetch.py (shared plumbing), numpy and pillow.  See README.md next to this file.

    python get.py                                  # fetch from GitHub
    python get.py --from-mirror /path/to/bare.git  # read a local bare mirror
    python get.py --limit 0                        # every item (9298)
    python get.py --sample DIR                     # small local sample, not for committing
"""
import gzip
import sys
from pathlib import Path

import numpy as np

# fetch.py, the plumbing all sets share, sits one folder up; get.py is run as a plain script.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import fetch  # noqa: E402

NAME = "usps-scans"
REPO = "dgkim5360/the-elements-of-statistical-learning-notebooks"
COMMIT = "2c13a4818379451bcce802bcd7917f4878e12977"
FILES = {  # path in the repo at COMMIT -> md5 of the file as committed
    "data/zipcode/zip.train.gz": "206835541ea704bcfb4b6eea872678bf",
    "data/zipcode/zip.test.gz": "f9350e940232b89f1dc8f8eacac88625",
}


def load(mirrors):
    """(label, get) items of the 16x16 digits, train lines then test lines."""
    src = fetch.Pinned(REPO, COMMIT, FILES, mirrors)
    pairs = []
    for path in FILES:
        for vals in fetch.number_rows(gzip.decompress(src.read(path)), 257, path):
            v = np.asarray(vals[1:], dtype=np.float64).reshape(16, 16)
            img = np.clip(np.rint((v + 1.0) * 127.5), 0, 255).astype(np.uint8)
            pairs.append((str(int(vals[0])), img))
    return fetch.png_items(pairs)


if __name__ == "__main__":
    fetch.main(__doc__, load, name=NAME, repo=REPO, default_limit=2000, sample_n=300,
               style=fetch.FIXED_SEED)
