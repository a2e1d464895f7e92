#!/usr/bin/env python3
"""Fetch the Semeion Handwritten Digit set as one PNG per digit.

Source: semeion.data of the UCI "Semeion Handwritten Digit" data set
(Semeion Research Center of Sciences of Communication, Rome / Tactile Srl,
Brescia; CC BY 4.0), as committed in github.com/Code-Newborn/TinyNet_C.
Each of the 1593 lines holds 256 values (0.0000 / 1.0000, row-major 16x16,
1 = ink) followed by a one-hot label of 10 values.  The digits were scanned,
stretched to fill a 16x16 box and thresholded to 1 bit.  Bits are written as
0 -> 0, 1 -> 255 (the stored values, not inverted): light ink on a dark
background.  Nothing is resized.

Needs ../fetch.py (shared plumbing), numpy and pillow.  See README.md next to this file.

    python get.py                                  # fetch from GitHub
    python get.py --from-mirror /path/to/bare.git  # read a local bare mirror
    python get.py --limit 0                        # every item (1593)
    python get.py --sample DIR                     # small local sample, not for committing
"""
import sys
from pathlib import Path

import numpy as np

# fetch.py, the plumbing all sets share, sits one folder up; get.py is run as a plain script.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import fetch  # noqa: E402

NAME = "semeion-digits"
REPO = "Code-Newborn/TinyNet_C"
COMMIT = "e4b0fe72133b7354ccfb63d6094775f5cb704860"
FILES = {  # path in the repo at COMMIT -> md5 of the file as committed
    "semeion.data": "dd10ba7e844b4f5de6e49b2f66cc6ca0",
}


def load(mirrors):
    """(label, get) items of the 1593 16x16 digits, in file order."""
    src = fetch.Pinned(REPO, COMMIT, FILES, mirrors)
    pairs = []
    for path in FILES:
        for vals in fetch.number_rows(src.read(path), 266, path):
            bits = np.asarray(vals[:256], dtype=np.float64).reshape(16, 16)
            onehot = vals[256:]
            if sorted(onehot) != [0.0] * 9 + [1.0] or not set(bits.ravel()) <= {0.0, 1.0}:
                sys.exit(f"get.py: unexpected values in {path}")
            pairs.append((str(onehot.index(1.0)), (bits * 255).astype(np.uint8)))
    if len(pairs) != 1593:
        sys.exit(f"get.py: expected 1593 digits, got {len(pairs)}")
    return fetch.png_items(pairs)


if __name__ == "__main__":
    fetch.main(__doc__, load, name=NAME, repo=REPO, default_limit=2000, sample_n=300,
               style=fetch.FIXED_SEED)
