#!/usr/bin/env python3
"""Fetch handwritten Arabic (Eastern Arabic / Hindi) digits (outlier set `arabic-digits`).

Source: github.com/mloey/Arabic-Handwritten-Digits-Dataset, "Test Images.zip":
the 10,000 test images of MADBase (modified Arabic handwritten digits database,
700 writers; El-Sherif & Abdelazeem, and Loey et al.), 28x28 grey PNGs, light
strokes on a dark ground like MNIST. The PNG bytes are written unchanged.
File names: arabic-DIGIT_INDEX.png, where DIGIT is the value of the Eastern
Arabic numeral (arabic-5 is the glyph for five) and INDEX the id in the zip.

  python get.py --from-mirror /path/to/Arabic-Handwritten-Digits-Dataset.git
  python get.py                       # from raw.githubusercontent.com
  python get.py --limit 500 --out /tmp/arabic-digits

No committed sample: the repository states no licence (see README).
"""
import io
import re
import sys
import zipfile
from pathlib import Path

# fetch.py, the plumbing all sets share, sits one folder up; get.py is run as a plain script.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import fetch  # noqa: E402

NAME = "arabic-digits"
REPO = "mloey/Arabic-Handwritten-Digits-Dataset"
COMMIT = "0e691d1b38f9a08ceb91325becb633d8b97b135b"
ZIP = "Test Images.zip"
SOURCES = {ZIP: "258d12dff10a8fdaf17be73e257e0f25"}
PATTERN = re.compile(r"^test/id_(\d+)_label_(\d)\.png$")


def load(mirrors):
    """The 10,000 test PNGs as (arabic-DIGIT, id, get) items, bytes unchanged."""
    zf = zipfile.ZipFile(io.BytesIO(fetch.Pinned(REPO, COMMIT, SOURCES, mirrors).read(ZIP)))
    found = sorted((int(m.group(1)), int(m.group(2)), name)
                   for name in zf.namelist() for m in [PATTERN.match(name)] if m)
    if len(found) != 10000:
        sys.exit(f"get.py: expected 10000 test images in {ZIP}, found {len(found)}")
    return [(f"arabic-{digit}", ident, (lambda name=name: (zf.read(name), ".png")))
            for ident, digit, name in found]


if __name__ == "__main__":
    fetch.main(__doc__, load, name=NAME, repo=REPO, default_limit=2000, sample_n=300,
               sample_ok=False, style=fetch.SEEDED)    # no licence stated: no sample
