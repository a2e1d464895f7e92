#!/usr/bin/env python3
"""Fetch scikit-image's sample photographs (outlier set `photos`) for flowpaint.

Source: github.com/scikit-image/scikit-image, src/_skimage2/data/ at a pinned
commit: 15 photographs and textures that the scikit-image docstrings mark as
CC0 or public domain (astronaut, camera, cat, coffee, coins, Hubble deep
field, rocket launch, retina, brick / grass / gravel textures, horse
silhouette, a photo of handwritten formulas, a cell, a motion-blurred
clock). They are written byte for byte as the source files (PNG or JPEG, grey, RGB or RGBA,
172 to 1411 px a side), the way a user would upload a photo.
File names: NAME_INDEX.png / .jpg (chelsea_02.png ...).

  python get.py --from-mirror /path/to/scikit-image.git
  python get.py                       # from raw.githubusercontent.com
  python get.py --sample DIR          # small local sample (all but the 2 largest files),
                                      # not for committing
"""
import os
import sys
from pathlib import Path

# fetch.py, the plumbing all sets share, sits one folder up; get.py is run as a plain script.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import fetch  # noqa: E402

NAME = "photos"
REPO = "scikit-image/scikit-image"
COMMIT = "cd0a3d22b9f359f05618d75d5c7a29b91b4951ca"
DIR = "src/_skimage2/data/"
FILES = {  # file in DIR -> md5, with each image's licence
    "astronaut.png": "97066e0a8baf4cd0be9859f9825aa3a2",  # public domain (NASA)
    "camera.png": "f8b13d2cdd5ba56cf4ba2321bb7222f0",  # CC0, Lav Varshney
    "chelsea.png": "0f1b4a59504988622035d850dc0555ac",  # CC0, Stefan van der Walt
    "coffee.png": "f24210802e8d0690e0c1c2302f907cc4",  # CC0, Rachel Michetti
    "coins.png": "83d5e6ca6fb2724cdb5cf64cf891f7a8",  # Brooklyn Museum, no known restrictions
    "hubble_deep_field.jpg": "bfc42613c8edb720cf7d1343693787a4",  # public domain (NASA)
    "rocket.jpg": "511130d2072cc744a1fa5015bc23557a",  # public domain (SpaceX)
    "retina.jpg": "5fa589edda0ab6832e3afcd92c402412",  # CC0 (Wikimedia Commons)
    "brick.png": "b4177b840b8d017fd04c0fe8c9dafc61",  # CC0 (CC0Textures)
    "grass.png": "406db280a14db26d04b65c3c3d0c188f",  # CC0 (DeviantArt, linolafett)
    "gravel.png": "1ae4f1e9e7988a5279ee2b3b0bd24e1f",  # CC0 (CC0Textures)
    "horse.png": "cb37827cfe996bea5492e9fab59097e4",  # CC0 (openclipart, Andreas Preuss)
    "text.png": "e96b3150d0e79a4c3f3bd815e542b793",  # public domain (Wikipedia)
    "cell.png": "77bccc0196c8bfd37d9f5418937643dc",  # CC0
    "clock_motion.png": "9aa42692ada925821f31870e301af77e",  # public domain, Stefan van der Walt
}
SOURCES = {DIR + name: md5 for name, md5 in FILES.items()}


def load(mirrors):
    """One (name, index, get) item per source file; get() returns its bytes unchanged."""
    src = fetch.Pinned(REPO, COMMIT, SOURCES, mirrors)
    items = []
    for index, path in enumerate(SOURCES):
        stem, ext = os.path.splitext(path[len(DIR):])
        items.append((stem.replace("_", "-"), index,
                      (lambda path=path, ext=ext: (src.read(path), ext))))
    return items


if __name__ == "__main__":
    fetch.main(__doc__, load, name=NAME, repo=REPO, default_limit=len(SOURCES),
               sample_n=len(SOURCES), style=fetch.SEEDED,  # all CC0 or public domain
               sample_exclude=("astronaut", "hubble-deep-field"))  # keeps the sample near 2 MB
