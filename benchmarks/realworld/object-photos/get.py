#!/usr/bin/env python3
"""Fetch one photograph per ImageNet class (outlier set `object-photos`) as the original JPEGs.

Source: github.com/EliSchwartz/imagenet-sample-images at a pinned commit: one
image per ILSVRC-2012 class (1000 files, `<wnid>_<class>.JPEG`), picked at
random by the repository's author from ImageNet.  Everyday photographs of
animals, plants, food, vehicles, tools, furniture, buildings, scenes and
people, colour (22 grey), 56 to 2400 px a side, most 500 px on the long side.

Every class whose picture is a garment, footwear, headwear, a bag or a worn
accessory is left out (71 classes, listed in EXCLUDED and in README.md), so the
set is an outlier set for both models: 929 photos.  They are written byte for
byte, the way a user would upload a photo.  File names: GROUP_INDEX.jpg, INDEX
the ImageNet class index (0-999, its class name in manifest.tsv) and GROUP one
of six coarse groups of ImageNet's class order (GROUPS): animal, object, food,
scene, person, plant.  --limit deals the subset round robin over the groups.

manifest.tsv (next to this script, pinned by its md5 below) lists every used
file with its md5 and size; each fetched file is checked against it.

Needs ../fetch.py (shared plumbing) and numpy.  See README.md next to this file.

    python get.py                                  # fetch from GitHub (one request per photo)
    python get.py --from-mirror /path/to/bare.git  # read a local bare mirror
    python get.py --limit 300                      # 300 photos, spread over the groups

No --sample: the photos' licences are unknown (see README.md).
"""
import sys
from pathlib import Path

# fetch.py, the plumbing all sets share, sits one folder up; get.py is run as a plain script.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import fetch  # noqa: E402

NAME = "object-photos"
REPO = "EliSchwartz/imagenet-sample-images"
COMMIT = "bc69043e2862758a1906c6a24a792bb28c6bb2ff"
MANIFEST = Path(__file__).resolve().parent / "manifest.tsv"
MANIFEST_MD5 = "fcdf85e261183c8ddd9d609b84904898"
COUNT = 929
GROUPS = (  # (first, last ImageNet class index, group): ImageNet's classes come in these runs
    (0, 397, "animal"), (398, 922, "object"), (923, 969, "food"), (970, 980, "scene"),
    (981, 983, "person"), (984, 998, "plant"), (999, 999, "object"),
)
EXCLUDED = (  # ImageNet classes left out: the photo shows what Fashion-MNIST could call its own
    # garments, swimwear, underwear, robes, uniforms, armour worn as a top
    "abaya", "academic_gown", "apron", "bikini", "brassiere", "breastplate", "bulletproof_vest",
    "cardigan", "chain_mail", "cloak", "cuirass", "diaper", "fur_coat", "gown", "hoopskirt",
    "jean", "jersey", "kimono", "lab_coat", "maillot", "military_uniform", "miniskirt",
    "overskirt", "pajama", "poncho", "sarong", "stole", "suit", "sweatshirt", "swimming_trunks",
    "trench_coat", "vestment",
    # neckwear, cloth accessories, hands, legs and feet
    "bib", "bolo_tie", "bow_tie", "Windsor_tie", "feather_boa", "mitten", "sock",
    "Christmas_stocking", "knee_pad",
    # footwear and a shoe shop
    "clog", "cowboy_boot", "Loafer", "running_shoe", "sandal", "shoe_shop",
    # headwear
    "bathing_cap", "bearskin", "bonnet", "cowboy_hat", "crash_helmet", "football_helmet",
    "mortarboard", "pickelhaube", "shower_cap", "sombrero", "ski_mask",
    # bags and bag-like pouches
    "backpack", "mailbag", "plastic_bag", "purse", "sleeping_bag", "wallet", "pencil_box",
    # not garment classes, but this sample photo is mostly clothes or shoes
    "velvet", "wool", "sunglasses", "groom", "prison",
)


def group(index):
    """The coarse group of ImageNet class INDEX."""
    return next(name for first, last, name in GROUPS if first <= index <= last)


def read_manifest():
    """[(index, group, path, md5)] from manifest.tsv, itself checked against MANIFEST_MD5."""
    rows = []
    for index, _wnid, label, path, md5, _size in fetch.manifest_rows(MANIFEST, MANIFEST_MD5, 6):
        if label in EXCLUDED:
            sys.exit(f"get.py: excluded class {label!r} in manifest")
        rows.append((int(index), group(int(index)), path, md5))
    if len(rows) != COUNT:
        sys.exit(f"get.py: manifest lists {len(rows)} photos, expected {COUNT}")
    return rows


def load(mirrors):
    """(label, index, get) items, one per manifest row; get() returns the JPEG bytes unchanged,
    each checked against its md5 in the manifest."""
    rows = read_manifest()
    src = fetch.Pinned(REPO, COMMIT, {path: md5 for _, _, path, md5 in rows}, mirrors)
    return [(name, index, (lambda path=path: (src.read(path), ".jpg")))
            for index, name, path, _ in rows]


if __name__ == "__main__":
    fetch.main(__doc__, load, name=NAME, repo=REPO, default_limit=COUNT, sample_n=100,
               sample_ok=False, style=fetch.SEEDED)    # licences of the photos unknown: no sample
