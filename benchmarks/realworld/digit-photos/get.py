#!/usr/bin/env python3
"""Fetch photos of handwritten digits on paper (set `digit-photos`) as the original files.

Source: twelve public GitHub repositories, each pinned at a commit, in which one
person wrote the digits 0-9 on paper, a whiteboard or sticky notes with a pen,
pencil or marker, photographed them with a phone or camera and cropped each digit
into its own image (mostly coursework: "test the network on your own handwriting").
117 photos by 12 writers, 11-12 per digit; colour, 74 to 2597 px a side, PNG or
JPEG as committed.  They are written byte for byte, the way a user would upload
a photo: nothing is converted, inverted or resized.

manifest.tsv (next to this script, pinned by its md5 below) lists every used file
with its digit, repository, commit, path, md5 and size; each fetched file is
checked against it.  File names: DIGIT_INDEX.EXT, INDEX the manifest row (0-116),
EXT .jpg or .png as stored.

Needs ../fetch.py (shared plumbing) and numpy.  See README.md next to this file.

    python get.py                                  # fetch from GitHub (one request per photo)
    python get.py --from-mirror A.git --from-mirror B.git ...
                                                   # read local bare mirrors, one per repository
    python get.py --limit 50                       # 50 photos, spread over the digits

No --sample: eleven of the twelve repositories state no licence (see README.md).
"""
import sys
from pathlib import Path

# fetch.py, the plumbing all sets share, sits one folder up; get.py is run as a plain script.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import fetch  # noqa: E402

NAME = "digit-photos"
REPOS = "twelve repositories listed in manifest.tsv"
MANIFEST = Path(__file__).resolve().parent / "manifest.tsv"
MANIFEST_MD5 = "5417808d2df6e11223793bcc819f100c"
COUNT = 117
EXTENSIONS = {".jpg": ".jpg", ".jpeg": ".jpg", ".png": ".png"}  # source suffix -> written suffix


def read_manifest():
    """[(digit, repo, commit, path, md5)] from manifest.tsv, itself checked against
    MANIFEST_MD5."""
    rows = []
    for digit, repo, commit, path, md5, _size in fetch.manifest_rows(MANIFEST, MANIFEST_MD5, 6):
        if digit not in "0123456789" or len(digit) != 1:
            sys.exit(f"get.py: unexpected label {digit!r} in manifest")
        rows.append((digit, repo, commit, path, md5))
    if len(rows) != COUNT:
        sys.exit(f"get.py: manifest lists {len(rows)} photos, expected {COUNT}")
    return rows


def load(mirrors):
    """(digit, row, get) items, one per manifest row; get() returns the file's bytes unchanged,
    checked against its md5 in the manifest."""
    rows = read_manifest()
    sources = {}  # (repo, commit) -> Pinned, opened in manifest order
    for _, repo, commit, _, _ in rows:
        if (repo, commit) not in sources:
            pinned = {p: m for _, r, c, p, m in rows if (r, c) == (repo, commit)}
            sources[repo, commit] = fetch.Pinned(repo, commit, pinned, mirrors)
    items = []
    for i, (digit, repo, commit, path, _) in enumerate(rows):
        ext = EXTENSIONS[Path(path).suffix.lower()]
        src = sources[repo, commit]
        items.append((digit, i, (lambda src=src, path=path, ext=ext: (src.read(path), ext))))
    return items


if __name__ == "__main__":
    fetch.main(__doc__, load, name=NAME, repo=REPOS, default_limit=COUNT, sample_n=30,
               sample_ok=False, style=fetch.SEEDED)    # no licence stated for most: no sample
