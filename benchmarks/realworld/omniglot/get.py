#!/usr/bin/env python3
"""Fetch Omniglot handwritten characters (outlier set `omniglot`) for flowpaint.

Source: github.com/brendenlake/omniglot (MIT), the two "minimal" background
splits python/images_background_small1.zip and ..._small2.zip (8 alphabets,
4,840 distinct images after removing the Greek and Latin folders both zips
share). Each image is written as a 105x105 8-bit PNG in the native polarity
(black strokes, 0, on white, 255); the 1-bit source PNG is only widened to
0/255 grey, never resized or inverted. File names: ALPHABET_INDEX.png.

  python get.py --from-mirror /path/to/omniglot.git   # here, from a local mirror
  python get.py                                        # from raw.githubusercontent.com
  python get.py --limit 500 --out /tmp/omniglot
  python get.py --sample DIR                            # small local sample, not for committing
"""
import io
import re
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

# fetch.py, the plumbing all sets share, sits one folder up; get.py is run as a plain script.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import fetch  # noqa: E402

NAME = "omniglot"
REPO = "brendenlake/omniglot"
COMMIT = "057f034baf2ecb8530bc5710e5a23584d2a519cc"
SOURCES = {
    "python/images_background_small1.zip": "e704a628b5459e08445c13499850abc4",
    "python/images_background_small2.zip": "b75a71a51d3b13f821f212756fe481fd",
}


def slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def load(mirrors):
    """The distinct character PNGs as (alphabet, index, get) items, 1-bit widened to 0/255."""
    src = fetch.Pinned(REPO, COMMIT, SOURCES, mirrors)
    members = {}                          # "Alphabet/characterNN/file.png" -> (zip, member)
    for path in SOURCES:
        zf = zipfile.ZipFile(io.BytesIO(src.read(path)))
        for m in zf.namelist():
            if m.endswith(".png"):
                members.setdefault(m.split("/", 1)[1], (zf, m))  # both zips hold Greek, Latin
    items = []
    for index, rel in enumerate(sorted(members)):
        zf, m = members[rel]

        def get(zf=zf, m=m):
            img = Image.open(io.BytesIO(zf.read(m)))
            arr = (np.asarray(img.convert("L")) > 127).astype(np.uint8) * 255   # 1-bit -> 0/255
            return fetch.png_bytes(arr), ".png"
        items.append((slug(rel.split("/")[0]), index, get))
    return items


if __name__ == "__main__":
    fetch.main(__doc__, load, name=NAME, repo=REPO, default_limit=2000, sample_n=200,
               style=fetch.SEEDED)                 # MIT: a local sample is allowed
