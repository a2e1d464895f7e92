#!/usr/bin/env python3
"""Render the UCI Pen-Based Recognition of Handwritten Digits trajectories
(pendigits-orig, UNIPEN format) as one PNG per digit.

Source: the uncompressed pendigits-orig.tra / pendigits-orig.tes of the UCI
data set (E. Alpaydin, F. Alimoglu, Bogazici University, 1998; CC BY 4.0),
committed as data/pendigits-train and data/pendigits-test in
github.com/choucavalier/pendigits-hmm.  44 writers wrote digits with a
cordless stylus on a WACOM PL-100V tablet inside 500x500 tablet-pixel boxes;
the files hold the raw (x, y) pen samples (y grows upwards), one .PEN_DOWN ..
.PEN_UP block per stroke.

There is no native raster: each digit is drawn as its own writing box
(500x500 tablet px -> 100x100 image, y flipped so up is up), dark ink (0) on
white (255), pen 3 px wide, anti-aliased (drawn at 4x, then reduced).  The
digit keeps the position and size it had in the writer's box (no cropping or
centring), as a canvas capture would.

Needs ../fetch.py (shared plumbing), numpy and pillow.  See README.md next to this file.

    python get.py                                  # fetch from GitHub
    python get.py --from-mirror /path/to/bare.git  # read a local bare mirror
    python get.py --limit 0                        # every item (10992)
    python get.py --sample DIR                     # small local sample, not for committing
"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# fetch.py, the plumbing all sets share, sits one folder up; get.py is run as a plain script.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import fetch  # noqa: E402

NAME = "pendigits-tablet"
REPO = "choucavalier/pendigits-hmm"
COMMIT = "03382e1457941714439d40b67e53eaf117fe4d08"
FILES = {  # path in the repo at COMMIT -> md5 of the file as committed
    "data/pendigits-train": "28e269fb7eaf8cb51af3f561743a0de5",  # = pendigits-orig.tra
    "data/pendigits-test": "af059c4c2017f25d371999f05757d1dc",   # = pendigits-orig.tes
}
COUNTS = {"data/pendigits-train": 7494, "data/pendigits-test": 3498}
BOX = 500      # tablet pixels per side of a writing box
SIZE = 100     # output pixels per side
PEN = 3        # pen width in output pixels
SUPER = 4      # supersampling factor for anti-aliasing


def load(mirrors):
    """(label, get) items, training digits then test digits; each digit is a list of strokes,
    rendered only when written (see render), since only a subset is written."""
    src = fetch.Pinned(REPO, COMMIT, FILES, mirrors)
    items = []
    for path in FILES:
        digits = []
        stroke = None
        for line in src.read(path).decode("ascii").splitlines():
            if line.startswith(".SEGMENT"):
                label = line.split('"')[1]
                if label not in "0123456789" or len(label) != 1:
                    sys.exit(f"get.py: unexpected label {label!r} in {path}")
                digits.append((label, []))
                stroke = None
            elif line.startswith(".PEN_DOWN"):
                stroke = []
                digits[-1][1].append(stroke)
            elif line.startswith(".PEN_UP"):
                stroke = None
            elif line.strip() and not line.startswith("."):
                if stroke is None:
                    sys.exit(f"get.py: point outside a stroke in {path}")
                x, y = (int(v) for v in line.split())
                stroke.append((x, y))
        if len(digits) != COUNTS[path] or any(not st for _, st in digits):
            sys.exit(f"get.py: expected {COUNTS[path]} digits with strokes in {path}, "
                     f"got {len(digits)}")
        items.extend(digits)
    return fetch.png_items(items, render)


def render(strokes):
    """The digit in its 100x100 writing box: dark 3 px anti-aliased pen on white, y up."""
    big = SIZE * SUPER
    scale = big / float(BOX)
    im = Image.new("L", (big, big), 255)
    draw = ImageDraw.Draw(im)
    width = PEN * SUPER
    r = width / 2.0
    for st in strokes:
        pts = [(x * scale, (BOX - y) * scale) for x, y in st]
        if len(pts) > 1:
            draw.line(pts, fill=0, width=width, joint="curve")
        for px, py in pts[:1] + pts[-1:]:  # round pen caps
            draw.ellipse([px - r, py - r, px + r, py + r], fill=0)
    return np.asarray(im.resize((SIZE, SIZE), Image.LANCZOS), dtype=np.uint8)


if __name__ == "__main__":
    fetch.main(__doc__, load, name=NAME, repo=REPO, default_limit=2000, sample_n=300,
               style=fetch.FIXED_SEED)
