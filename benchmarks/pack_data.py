"""Pack the training split of MNIST / Fashion-MNIST into a small folder that travels with the
checkout (to a borrowed GPU machine, where the datasets beside the checkout do not).

    python -m benchmarks.pack_data [--data-root ../shared/data] [--out gpu-data] \\
        [--datasets mnist fashion-mnist]

Writes ``<out>/<MNIST|FashionMNIST>/raw/train-{images-idx3,labels-idx1}-ubyte.gz`` (torchvision's
layout, gzipped IDX: about 10 + 26 MB), which ``inpaint_app.data`` reads through the usual
``--data-root``: train and val load from it; the test split does not travel (test bits/dim are
computed at home by ``benchmarks.gpu_home``). ``gpu-data/`` is ignored by git.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import sys
from pathlib import Path

import numpy as np

from inpaint_app.data import DATASETS, IDX_IMAGES, IDX_LABELS, default_data_root, read_idx

PACKABLE = ("mnist", "fashion-mnist")


def pack(name: str, data_root: Path, out: Path, level: int = 9) -> list[Path]:
    """Gzip the training images and labels of ``name``; returns the files written."""
    folder = DATASETS[name][0]
    src, dst = Path(data_root) / folder / "raw", Path(out) / folder / "raw"
    dst.mkdir(parents=True, exist_ok=True)
    written = []
    for stem in (IDX_IMAGES[True], IDX_LABELS[True]):
        target = dst / f"{stem}.gz"
        tmp = target.with_name(f".{target.name}.tmp")
        if (src / stem).is_file():
            with open(src / stem, "rb") as f_in, open(tmp, "wb") as raw_out, \
                    gzip.GzipFile(filename=stem, mode="wb", fileobj=raw_out, mtime=0,
                                  compresslevel=level) as f_out:
                shutil.copyfileobj(f_in, f_out, 1 << 20)
            source = src / stem
        elif (src / f"{stem}.gz").is_file():
            shutil.copyfile(src / f"{stem}.gz", tmp)
            source = src / f"{stem}.gz"
        else:
            sys.exit(f"error: {src / stem} (or {stem}.gz) not found: pass --data-root")
        if not np.array_equal(read_idx(tmp), read_idx(source)):  # a bad copy fails here, not there
            tmp.unlink()
            sys.exit(f"error: packing {source} did not reproduce it")
        tmp.replace(target)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-root", default=None, help="dataset root (default $FLOWPAINT_DATA)")
    p.add_argument("--out", default="gpu-data", help="the packed root (default gpu-data)")
    p.add_argument("--datasets", nargs="+", default=list(PACKABLE), choices=PACKABLE)
    p.add_argument("--level", type=int, default=9, choices=range(1, 10), metavar="1-9",
                   help="gzip level (9: smallest, the default; 1: fastest, for tests)")
    args = p.parse_args(argv)
    root = Path(args.data_root) if args.data_root else default_data_root()
    total = 0
    for name in args.datasets:
        for path in pack(name, root, Path(args.out), args.level):
            size = path.stat().st_size
            total += size
            print(f"{path}: {size / 2**20:.1f} MiB")
    print(f"{args.out}: {total / 2**20:.1f} MiB packed (train split only)")


if __name__ == "__main__":
    main()
