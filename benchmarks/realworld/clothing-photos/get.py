#!/usr/bin/env python3
"""Fetch garment photos of the Clothing dataset (small subset) as their
original JPEG files, for the Fashion-MNIST model.

Source: github.com/alexeygrigorev/clothing-dataset-small (Alexey Grigorev and
contributors, CC0 1.0), a subset of github.com/alexeygrigorev/clothing-dataset.
Photos of real garments (mostly worn or laid out, various backgrounds and
lighting), colour, 400 px wide and of varying height.  The original JPEG bytes
are written unchanged.

Only the classes that correspond to a Fashion-MNIST class are used (see
LABEL_MAP); hat, shorts and skirt are left out.  File names keep the source
class name: LABEL_INDEX.jpg, INDEX being the row of manifest.tsv.

manifest.tsv (next to this script, pinned by its md5 below) lists every used
source file with its md5; each fetched file is checked against it.

Needs ../fetch.py (shared plumbing) and numpy.  See README.md next to this file.

    python get.py                                  # fetch from GitHub
    python get.py --from-mirror /path/to/bare.git  # read a local bare mirror
    python get.py --limit 0                        # every listed photo (3239)
    python get.py --sample DIR                     # small local sample, not for committing
"""
import sys
from pathlib import Path

# fetch.py, the plumbing all sets share, sits one folder up; get.py is run as a plain script.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import fetch  # noqa: E402

NAME = "clothing-photos"
REPO = "alexeygrigorev/clothing-dataset-small"
COMMIT = "11961516512414bf9f6c150a832cfd21b54a6b54"
MANIFEST = Path(__file__).resolve().parent / "manifest.tsv"
MANIFEST_MD5 = "0a7f3c51725bebeaf1d7c05f3022c780"
LABEL_MAP = {  # source class -> Fashion-MNIST class(es)
    "t-shirt": "T-shirt/top",
    "pants": "Trouser",
    "longsleeve": "Pullover",
    "dress": "Dress",
    "outwear": "Coat",
    "shirt": "Shirt",
    "shoes": "Sneaker/Sandal/Ankle boot (footwear, not told apart in the source)",
}


def read_manifest():
    """[(label, path, md5)] from manifest.tsv, itself checked against MANIFEST_MD5."""
    rows = []
    for label, path, md5, _size in fetch.manifest_rows(MANIFEST, MANIFEST_MD5, 4):
        if label not in LABEL_MAP:
            sys.exit(f"get.py: unexpected label {label!r} in manifest")
        rows.append((label, path, md5))
    return rows


def load(mirrors):
    """(label, row, get) items, one per manifest row; get() returns the JPEG bytes unchanged,
    each checked against its md5 in the manifest."""
    rows = read_manifest()
    src = fetch.Pinned(REPO, COMMIT, {path: md5 for _, path, md5 in rows}, mirrors)
    return [(label, i, (lambda path=path: (src.read(path), ".jpg")))
            for i, (label, path, _) in enumerate(rows)]


if __name__ == "__main__":
    fetch.main(__doc__, load, name=NAME, repo=REPO, default_limit=2000, sample_n=100,
               style=fetch.FIXED_SEED)
