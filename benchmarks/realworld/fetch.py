"""Shared plumbing of the benchmarks/realworld/*/get.py scripts.

Every set's get.py fetches pinned files of a public GitHub repository (or reads them from a
local bare mirror), refuses to go on when an md5 differs, converts the files into images and
writes a seeded, class-balanced subset into a folder atomically. This module holds all of
that except the set-specific parts (pinned repo, commit, paths, md5s, parsing, conversion),
so the scripts stay small and behave alike. Needs Python 3 with numpy (and Pillow to
write PNGs).
"""
import argparse
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from dataclasses import dataclass

import numpy as np

RAW = "https://raw.githubusercontent.com"


@dataclass(frozen=True)
class Style:
    """How a set picks and names its subset; kept per set so its output stays byte-identical.

    seed_option: offer --seed N (else the seed is always 0); legacy_rng: shuffle with
    np.random.RandomState instead of np.random.default_rng; width: digits of the index in file
    names (None: as many as the largest index has). --limit 0 (or less) writes every item.
    """

    seed_option: bool
    legacy_rng: bool
    width: int | None


SEEDED = Style(seed_option=True, legacy_rng=False, width=None)
FIXED_SEED = Style(seed_option=False, legacy_rng=True, width=5)

_open_sources = []    # Pinned readers that hold a git process, closed when main() ends


class Pinned:
    """Files of REPO at COMMIT, each checked against its md5 in MD5S before it is returned.

    Read from the first of MIRRORS (bare git directories) that holds COMMIT, through one
    `git cat-file --batch` process, or from raw.githubusercontent.com when MIRRORS is empty.
    """

    def __init__(self, repo, commit, md5s, mirrors=None):
        self.repo, self.commit, self.md5s = repo, commit, md5s
        self.proc = None
        if mirrors:
            git = next((m for m in mirrors if _has_commit(m, commit)), None)
            if git is None:
                sys.exit(f"get.py: no mirror given holds commit {commit} of {repo}")
            self.proc = subprocess.Popen(["git", "--git-dir", git, "cat-file", "--batch"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            _open_sources.append(self)

    def read(self, path):
        """Bytes of PATH; exits, writing nothing, when they do not match the pinned md5."""
        data = self._from_mirror(path) if self.proc else self._from_github(path)
        got = hashlib.md5(data).hexdigest()
        if got != self.md5s[path]:
            sys.exit(f"get.py: md5 mismatch for {self.repo}/{path}: got {got}, "
                     f"expected {self.md5s[path]}; refusing to write anything")
        return data

    def _from_mirror(self, path):
        self.proc.stdin.write(f"{self.commit}:{path}\n".encode())
        self.proc.stdin.flush()
        head = self.proc.stdout.readline().split()
        if len(head) != 3 or head[1] != b"blob":
            sys.exit(f"get.py: {self.commit[:12]}:{path} is not in the mirror of {self.repo}")
        data = self.proc.stdout.read(int(head[2]))
        self.proc.stdout.read(1)                      # the newline after each object
        return data

    def _from_github(self, path):
        url = f"{RAW}/{self.repo}/{self.commit}/{urllib.parse.quote(path)}"
        print("fetching", url, file=sys.stderr)
        for attempt in range(3):
            try:
                with urllib.request.urlopen(url, timeout=300) as resp:
                    return resp.read()
            except OSError:
                if attempt == 2:
                    raise

    def close(self):
        if self.proc:
            self.proc.stdin.close()
            self.proc.wait()
            self.proc = None


def _has_commit(gitdir, commit):
    probe = subprocess.run(["git", "--git-dir", gitdir, "cat-file", "-e", commit + "^{commit}"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return probe.returncode == 0


def default_out(name):
    """${FLOWPAINT_DATA:-./data}/realworld/NAME, where the evaluation looks for the set."""
    return os.path.join(os.environ.get("FLOWPAINT_DATA", "./data"), "realworld", name)


def parse_args(doc, name, repo, default_limit, sample_n, sample_ok, style):
    """The options every get.py takes: --out, --limit, --sample, --from-mirror (and --seed)."""
    ap = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    ap.add_argument("--out", default=None,
                    help=f"output folder (default: ${{FLOWPAINT_DATA:-./data}}/realworld/{name})")
    zero = "; 0 = all"
    ap.add_argument("--limit", type=int, default=None,
                    help=f"write at most N items, seeded and spread over classes "
                         f"(default: {default_limit}{zero})")
    refused = "" if sample_ok else "; refused for this set"
    ap.add_argument("--sample", metavar="DIR", default=None,
                    help=f"write a small local sample (at most {sample_n} items) to DIR instead, "
                         f"not for committing{refused}")
    ap.add_argument("--from-mirror", metavar="GITDIR", action="append", default=None,
                    help=f"read the pinned files from a local bare git mirror of {repo} "
                         "(repeatable: each file comes from the first that holds its commit)")
    if style.seed_option:
        ap.add_argument("--seed", type=int, default=0, help="subset seed (default 0)")
    return ap.parse_args()


def spread(labels, limit, rng):
    """Sorted indices of at most LIMIT items, dealt round robin over the sorted classes,
    each class shuffled by RNG, so the subset is as even over classes as it can be."""
    classes = sorted(set(labels))
    pools = {c: [] for c in classes}
    for i, label in enumerate(labels):
        pools[label].append(i)
    for c in classes:
        rng.shuffle(pools[c])
    chosen, depth = [], 0
    while len(chosen) < min(limit, len(labels)):
        for c in classes:
            if depth < len(pools[c]) and len(chosen) < limit:
                chosen.append(pools[c][depth])
        depth += 1
    return sorted(chosen)


def write_atomic(out, files):
    """Write FILES ((name, bytes) pairs) into OUT: a temporary folder next to it, renamed into
    place only once complete, so OUT is never left half written."""
    out = os.path.abspath(out)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.tmp-", dir=parent)
    try:
        n = 0
        for fname, data in files:
            with open(os.path.join(tmp, fname), "wb") as fh:
                fh.write(data)
            n += 1
        old = None
        if os.path.exists(out):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.old-", dir=parent)
            os.rename(out, os.path.join(old, "x"))
        os.rename(tmp, out)
        if old:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"wrote {n} files to {out}")
    return n


def manifest_rows(path, md5, columns):
    """The rows of the tab-separated manifest at PATH (header line skipped), each a list of
    COLUMNS fields, once the file's own md5 is MD5; the pins of every listed file live there."""
    raw = path.read_bytes()
    got = hashlib.md5(raw).hexdigest()
    if got != md5:
        sys.exit(f"get.py: md5 mismatch for {path.name}: got {got}, expected {md5}")
    rows = [line.split("\t") for line in raw.decode("utf-8").splitlines()[1:]]
    if any(len(row) != columns for row in rows):
        sys.exit(f"get.py: {path.name} rows must hold {columns} tab-separated fields")
    return rows


def number_rows(data, count, what):
    """The non-blank lines of DATA (ASCII text) as lists of floats; each must hold COUNT."""
    for line in data.decode("ascii").splitlines():
        if not line.strip():
            continue
        vals = [float(v) for v in line.split()]
        if len(vals) != count:
            sys.exit(f"get.py: unexpected line length {len(vals)} in {what}")
        yield vals


def png_bytes(array):
    """ARRAY (uint8, HxW grey) as optimised PNG bytes."""
    from PIL import Image  # imported here: sets that write source bytes need no Pillow

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def png_items(pairs, render=None):
    """Items for main() from (label, image) pairs, numbered in order; the image, or
    RENDER(image) when given, is encoded as PNG only when it is written."""
    return [(label, i, lambda x=x: (png_bytes(render(x) if render else x), ".png"))
            for i, (label, x) in enumerate(pairs)]


def main(doc, load, *, name, repo, default_limit, sample_n, style, sample_ok=True,
         sample_exclude=()):
    """Run a get.py: parse the options, LOAD(mirrors) the items ((label, index, get) with
    get() -> (bytes, extension)), pick the subset and write LABEL_INDEX.EXT files."""
    args = parse_args(doc, name, repo, default_limit, sample_n, sample_ok, style)
    if args.sample is not None and not sample_ok:
        sys.exit(f"get.py: the licence of {name} does not clearly allow redistribution; "
                 "no sample")
    try:
        items = load(args.from_mirror)
        if args.sample is not None:
            items = [it for it in items if it[0] not in sample_exclude]
            limit, out = min(args.limit or sample_n, sample_n), args.sample
        else:
            limit = default_limit if args.limit is None else args.limit
            out = args.out or default_out(name)
        if limit <= 0:
            limit = len(items)
        seed = args.seed if style.seed_option else 0
        rng = np.random.RandomState(seed) if style.legacy_rng else np.random.default_rng(seed)
        pick = spread([label for label, _, _ in items], limit, rng)
        width = style.width or len(str(max(index for _, index, _ in items)))

        def files():
            for i in pick:
                label, index, get = items[i]
                data, ext = get()
                yield f"{label}_{index:0{width}d}{ext}", data

        write_atomic(out, files())
    finally:
        while _open_sources:
            _open_sources.pop().close()
