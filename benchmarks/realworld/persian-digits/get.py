#!/usr/bin/env python3
"""Fetch Hoda handwritten Persian (Farsi) digits (outlier set `persian-digits`).

Source: the Hoda Farsi digit dataset (Khosravi & Kabir 2007; Tarbiat Modarres
University with Hoda System Corporation), as committed to
github.com/amir-saniyan/HodaDatasetReader: DigitDB/Test 20000.cdb, 20,000
binary scans (200 dpi) of digits cut from university-entrance registration
forms, 2,000 per digit, each at its own size (about 10-60 px a side).

The .cdb file is a 1,024-byte header and then one run-length-encoded binary
record per sample (0xFF, label, width, height, byte count, then per row
alternating white/black run lengths starting with white). Each record is
written as an 8-bit PNG at its native size in the native polarity of the
scan: black ink (0) on white paper (255). Nothing is resized or inverted.
File names: persian-DIGIT_INDEX.png (INDEX = record number in the file).

  python get.py --from-mirror /path/to/HodaDatasetReader.git
  python get.py                       # from raw.githubusercontent.com
  python get.py --limit 500 --out /tmp/persian-digits

No committed sample: Hoda is "free of charge for research purposes and
non commercial uses only" (see README).
"""
import struct
import sys
from pathlib import Path

import numpy as np

# fetch.py, the plumbing all sets share, sits one folder up; get.py is run as a plain script.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import fetch  # noqa: E402

NAME = "persian-digits"
REPO = "amir-saniyan/HodaDatasetReader"
COMMIT = "728dd5465fcf38c3c82a1d3fda721da30b2e70ed"
CDB = "DigitDB/Test 20000.cdb"
SOURCES = {CDB: "81b038f2151182e42ab728f2c232afde"}
HEADER = 1024


def decode_cdb(data):
    """[(label, uint8 HxW array)] from a Hoda .cdb file (binary images only)."""
    _year, _month, _day, height, width, total = struct.unpack_from("<HBBBBI", data, 0)
    if data[10 + 128 * 4] != 0:
        sys.exit(f"get.py: {CDB} holds grey images; only the binary kind is handled")
    fixed = width > 0 and height > 0
    pos, records = HEADER, []
    for _ in range(total):
        if data[pos] != 0xFF:
            sys.exit(f"get.py: bad record start at byte {pos} of {CDB}")
        label = data[pos + 1]
        pos += 2
        w, h = (width, height) if fixed else (data[pos], data[pos + 1])
        if not fixed:
            pos += 2
        nbytes = struct.unpack_from("<H", data, pos)[0]
        pos += 2
        runs, end = data[pos:pos + nbytes], pos + nbytes
        img = np.full((h, w), 255, np.uint8)          # paper
        k = 0
        for y in range(h):
            x, ink = 0, False                         # every row starts with a white run
            while x < w:
                n = runs[k]
                k += 1
                if ink:
                    img[y, x:x + n] = 0
                x += n
                ink = not ink
            if x != w:
                sys.exit(f"get.py: row overruns its width in record {len(records)} of {CDB}")
        records.append((label, img))
        pos = end
    return records


def load(mirrors):
    """The 20,000 records as (persian-DIGIT, record, get) items at their native size."""
    records = decode_cdb(fetch.Pinned(REPO, COMMIT, SOURCES, mirrors).read(CDB))
    return fetch.png_items((f"persian-{label}", img) for label, img in records)


if __name__ == "__main__":
    fetch.main(__doc__, load, name=NAME, repo=REPO, default_limit=2000, sample_n=300,
               sample_ok=False, style=fetch.SEEDED)    # research / non-commercial only
