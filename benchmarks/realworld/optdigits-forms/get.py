#!/usr/bin/env python3
"""Fetch the original 32x32 bitmaps of UCI Optical Recognition of Handwritten
Digits (optdigits-orig) as one PNG per digit.

Source: the uncompressed optdigits-orig files of the UCI data set
(E. Alpaydin, C. Kaynak, Bogazici University, 1995; CC BY 4.0):
  optdigits-orig.tra    (1934 digits, 30 writers) from github.com/zikunrain/csmath
  optdigits-orig.windep (1797 digits, 13 other writers) from
                        github.com/sukeshsangam/pattern-recognition-neural-networks
Digits were written on preprinted NIST forms, scanned, segmented, size
normalised into a 32x32 box and stored as 0/1 bitmaps (1 = ink).  The file
header declares "whitepix = 0", i.e. 0 is white paper, so bits are written as
0 -> 255 (white), 1 -> 0 (black ink): dark ink on a light background, as the
files define it.  Nothing is resized.

--from-mirror may be given once per source repository (the script uses, for
each file, the first mirror that holds the pinned commit).

Needs ../fetch.py (shared plumbing), numpy and pillow.  See README.md next to this file.

    python get.py                                  # fetch from GitHub
    python get.py --from-mirror A.git --from-mirror B.git  # local mirrors
    python get.py --limit 0                        # every item (3731)
    python get.py --sample DIR                     # small local sample, not for committing
"""
import sys
from pathlib import Path

import numpy as np

# fetch.py, the plumbing all sets share, sits one folder up; get.py is run as a plain script.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import fetch  # noqa: E402

NAME = "optdigits-forms"
SOURCES = [  # (repo, commit, path, md5 of the file as committed, digits), in index order
    ("zikunrain/csmath", "59bdf597024ebd8a51bd554a8a77334a82293e79",
     "optdigits-orig.tra", "7b4510ef07261e75072accf6b6ac2e15", 1934),
    ("sukeshsangam/pattern-recognition-neural-networks",
     "3b06ae726302dfcf384c1eec5ac6f2b71ae7ff53",
     "optdigits-orig.windep", "cb5d9a2b5c44f18b795702a02c776faa", 1797),
]
REPO = "zikunrain/csmath and sukeshsangam/pattern-recognition-neural-networks"


def load(mirrors):
    """(label, get) items of the 32x32 bitmaps, .tra digits then .windep digits."""
    pairs = []
    for repo, commit, path, md5, count in SOURCES:
        data = fetch.Pinned(repo, commit, {path: md5}, mirrors).read(path)
        lines = data.decode("ascii").splitlines()
        if "whitepix = 0" not in [line.strip() for line in lines[:21]]:
            sys.exit(f"get.py: unexpected header in {path}")
        rows = []
        n = 0
        body = lines[21:]
        if body and body[-1].strip() == "EOF":  # the .windep copy ends with an "EOF" line
            body = body[:-1]
        for line in body:
            line = line.strip()
            if len(line) == 32 and set(line) <= {"0", "1"}:
                rows.append([c == "1" for c in line])
            elif line.isdigit() and len(rows) == 32:
                ink = np.asarray(rows, dtype=bool)
                pairs.append((line, np.where(ink, 0, 255).astype(np.uint8)))
                rows = []
                n += 1
            elif line:
                sys.exit(f"get.py: unexpected line {line!r} in {path}")
        if n != count or rows:
            sys.exit(f"get.py: expected {count} digits in {path}, got {n}")
    return fetch.png_items(pairs)


if __name__ == "__main__":
    fetch.main(__doc__, load, name=NAME, repo=REPO, default_limit=2000, sample_n=300,
               style=fetch.FIXED_SEED)
