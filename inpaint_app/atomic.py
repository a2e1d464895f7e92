"""Atomic file writes: a temporary file in the target folder, then one rename.

A crash, a full disk or a refused rename leaves the previous file (or no file) and no temporary
file behind; readers never see half a checkpoint, image or CSV.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb", **open_kwargs: object) -> Iterator[IO]:
    """``with atomic_write(path) as f: ...`` writes ``path`` all at once or not at all.

    The file gets the usual permissions (0666 less the umask), not mkstemp's private 0600.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ensure_writable_dir(folder: str | Path) -> Path:
    """Create ``folder`` if needed and prove a file can be written there, before any long work
    starts (so a read-only or impossible output location fails at once, with nothing lost)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder):
        pass
    return folder
