"""Train GPU recipes on a borrowed GPU for a wall-clock budget and pack what comes back.

    python -m benchmarks.gpu_run --minutes 7 --out "$OUT" \\
        pipelines/configs/mnist-glow-gpu.json pipelines/configs/fashion-mnist-glow-gpu.json

Each CONFIG runs as its own ``python -m pipelines.train`` process, all at once (they share the
GPU; each gets ``cpu_count // n`` CPU threads), with ``--data-root gpu-data`` (the folder
``python -m benchmarks.pack_data`` writes), ``--max-minutes MINUTES``, ``--amp`` and the test set
off (it does not travel: ``benchmarks.gpu_home`` scores it at home). Runs write to
``runs/gpu/<name>/`` (``<name>``: the config's file name) with a ``train.log`` each. A run still
going ``--grace`` minutes after its budget is stopped; its last best ``model.pt`` is packed anyway.

Then ``OUT`` gets, flat, at most 8 files of at most 15 MiB (what a borrowed machine sends back):
``<name>.pt`` per run (``{config, state_dict, card}``, the card holding the validation history;
``--weights``: float32 when all files fit, else bf16, where the GPU recipe's 17 MB becomes 8.7 MB;
a file that would be over 15 MiB is split into ``<name>.part0.pt``, ``<name>.part1.pt``, ...),
``summary.json`` (every run: exit status, steps, validation curve, files with their SHA-256)
and ``logs.txt`` (all logs).

Imports only the standard library and torch: nothing app-only (no gradio) is on this path.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

MAX_FILES = 8  # what comes back from a borrowed machine
MAX_FILE_BYTES = 15 * 2**20  # under its 16 MiB limit, with room for the pickle's framing
LOG_TAIL_BYTES = 2 * 2**20  # per run in logs.txt
NAME_OK = re.compile(r"[^A-Za-z0-9._-]")
TRANSIT_DTYPES = {"bf16": "bfloat16", "fp32": "float32"}


def run_name(config: Path) -> str:
    return NAME_OK.sub("_", config.stem) or "run"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("configs", nargs="+", metavar="CONFIG", help="pipelines.train JSON recipes")
    p.add_argument("--minutes", type=float, required=True,
                   help="training budget of every run (train.py's --max-minutes)")
    p.add_argument("--out", required=True, help="folder for what comes back (flat, <= 8 files)")
    p.add_argument("--data-root", default="gpu-data", help="packed data (benchmarks.pack_data)")
    p.add_argument("--runs", default="runs/gpu", help="where the runs write (default runs/gpu)")
    p.add_argument("--device", default="cuda", help="cuda (default), cpu for a stand-in, auto")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads per run (default cpu_count // runs)")
    p.add_argument("--no-amp", dest="amp", action="store_false",
                   help="train in float32 (default: --amp, bf16 coupling networks)")
    p.add_argument("--weights", choices=["auto", *sorted(TRANSIT_DTYPES)], default="auto",
                   help="dtype of the weights in transit: fp32 (split into parts as needed), "
                        "bf16 (half the size), auto (default: fp32 when all files fit in 8)")
    p.add_argument("--grace", type=float, default=2.0,
                   help="minutes after the budget before a run still going is stopped")
    p.add_argument("--train-args", default="",
                   help="extra pipelines.train flags for every run, e.g. '--limit-val 2000'")
    args = p.parse_args(argv)
    names = [run_name(Path(c)) for c in args.configs]
    if len(set(names)) != len(names):
        p.error(f"two configs share a name: {names}")
    if len(names) + 2 > MAX_FILES:
        p.error(f"{len(names)} runs + summary.json + logs.txt exceed {MAX_FILES} files")
    return args


def train_command(args: argparse.Namespace, config: Path, out: Path, threads: int) -> list[str]:
    return [sys.executable, "-m", "pipelines.train", "--config", str(config),
            "--data-root", args.data_root, "--max-minutes", f"{args.minutes:g}",
            "--out", str(out), "--device", args.device, "--threads", str(threads),
            *(["--amp"] if args.amp else []), *shlex.split(args.train_args)]


def prepare(config: Path, out: Path) -> Path:
    """A copy of the recipe with the test evaluation off, in the run's folder; stale outputs of an
    earlier run there are removed so that nothing old is packed."""
    recipe = json.loads(config.read_text())
    recipe["eval_test"] = False  # the test split does not travel; gpu_home scores it at home
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("model.pt", "card.json", "samples.png", "train_state.pt", "train.log"):
        (out / stale).unlink(missing_ok=True)
    path = out / "config.json"
    path.write_text(json.dumps(recipe, indent=2) + "\n")
    return path


def last_status(log: Path) -> str:
    """The latest progress line of a train.log (tqdm rewrites its line with carriage returns)."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 4096))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return "starting"
    lines = [s.strip() for s in re.split(r"[\r\n]", tail) if s.strip()]
    return lines[-1][-110:] if lines else "starting"


def train_all(args: argparse.Namespace) -> list[dict]:
    """Start every run, report progress every 30 s, stop runs past budget + grace."""
    configs = [Path(c) for c in args.configs]
    threads = args.threads or max(1, (os.cpu_count() or 1) // len(configs))
    env = {**os.environ, "TQDM_MININTERVAL": "20", "PYTHONUNBUFFERED": "1"}
    runs = []
    for config in configs:
        name = run_name(config)
        out = Path(args.runs) / name
        cmd = train_command(args, prepare(config, out), out, threads)
        log = open(out / "train.log", "w")  # noqa: SIM115 - closed when the run ends
        log.write("$ " + shlex.join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        runs.append({"name": name, "config": str(config), "out": out, "log": log, "proc": proc,
                     "command": cmd, "started": time.time()})
        print(f"started {name}: {shlex.join(cmd)}", flush=True)
    deadline = time.time() + 60 * (args.minutes + args.grace)
    last_report = time.time()
    while any(r["proc"].poll() is None for r in runs):
        time.sleep(1)
        now = time.time()
        if now > deadline:
            for r in runs:
                if r["proc"].poll() is None:
                    print(f"{r['name']}: past budget + grace, stopping it", flush=True)
                    r["proc"].terminate()
                    r["stopped"] = True
            for r in runs:
                try:
                    r["proc"].wait(timeout=20)
                except subprocess.TimeoutExpired:
                    r["proc"].kill()
                    r["proc"].wait()
            break
        if now - last_report >= 30:
            last_report = now
            for r in runs:
                state = "running" if r["proc"].poll() is None else f"exit {r['proc'].returncode}"
                print(f"[{(now - r['started']) / 60:4.1f} min] {r['name']} ({state}): "
                      f"{last_status(r['out'] / 'train.log')}", flush=True)
    for r in runs:
        r["log"].close()
        r["returncode"] = r["proc"].returncode
        r["wall_minutes"] = round((time.time() - r["started"]) / 60, 2)
        print(f"{r['name']}: exit {r['returncode']} after {r['wall_minutes']} min", flush=True)
    return runs


def transit_state(state_dict: dict, dtype: str) -> tuple[dict, dict]:
    """Floating-point tensors cast to ``dtype``; their original dtypes, to restore them."""
    import torch

    target = getattr(torch, dtype)
    out, dtypes = {}, {}
    for key, value in state_dict.items():
        if torch.is_tensor(value) and value.is_floating_point():
            dtypes[key] = str(value.dtype).removeprefix("torch.")
            value = value.detach().to("cpu", target).clone()
        out[key] = value
    return out, dtypes


def pack(run: dict, out_dir: Path, dtype: str, extra_card: dict) -> list[Path]:
    """``out_dir/<name>.pt`` (or ``<name>.partK.pt``) from the run's best ``model.pt``."""
    import torch

    ckpt = torch.load(run["out"] / "model.pt", map_location="cpu", weights_only=True)
    card = {**ckpt.get("card", {}), **extra_card}
    state, dtypes = transit_state(ckpt["state_dict"], dtype)
    transit = {"dtype": dtype, "dtypes": dtypes, "part": 0, "parts": 1}
    single = out_dir / f"{run['name']}.pt"
    torch.save({"config": ckpt["config"], "state_dict": state, "card": card,
                "transit": transit}, single)
    if single.stat().st_size <= MAX_FILE_BYTES:
        return [single]
    single.unlink()  # too big: split the state dict into parts of about MAX_FILE_BYTES * 0.9
    parts, current, size = [], {}, 0
    for key, value in state.items():
        nbytes = value.numel() * value.element_size() if torch.is_tensor(value) else 64
        if current and size + nbytes > 0.9 * MAX_FILE_BYTES:
            parts.append(current)
            current, size = {}, 0
        current[key] = value
        size += nbytes
    parts.append(current)
    paths = []
    for k, part in enumerate(parts):
        path = out_dir / f"{run['name']}.part{k}.pt"
        torch.save({"config": ckpt["config"], "state_dict": part, "card": card,
                    "transit": {**transit, "part": k, "parts": len(parts)}}, path)
        if path.stat().st_size > MAX_FILE_BYTES:
            raise RuntimeError(f"{path} is over {MAX_FILE_BYTES} bytes: one tensor is too big")
        paths.append(path)
    return paths


def transit_choice(runs: list[dict]) -> str:
    """fp32 when every run's float32 checkpoint, split into parts, fits in the files that come
    back with summary.json and logs.txt; bf16 otherwise (half the bytes, about 1e-3 bits/dim)."""
    parts = 2
    for r in runs:
        path = r["out"] / "model.pt"
        if path.is_file():  # parts hold at most 0.9 of the limit; 0.8 leaves room for packing
            parts += max(1, math.ceil(path.stat().st_size / (0.8 * MAX_FILE_BYTES)))
    return "fp32" if parts <= MAX_FILES else "bf16"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def log_text(path: Path) -> str:
    """A train.log for logs.txt: carriage-return updates collapsed, tail kept if it is long."""
    try:
        raw = path.read_bytes()[-LOG_TAIL_BYTES:].decode("utf-8", "replace")
    except OSError as err:
        return f"(no log: {err})\n"
    lines = [segment.split("\r")[-1] for segment in raw.split("\n")]
    return "\n".join(line for line in lines if line.strip()) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.iterdir():
        if stale.is_file() and (stale.suffix == ".pt" or stale.name in ("summary.json",
                                                                         "logs.txt")):
            stale.unlink()
    runs = train_all(args)
    this_command = "python -m benchmarks.gpu_run " + shlex.join(sys.argv[1:] if argv is None
                                                                else argv)
    weights = args.weights if args.weights != "auto" else transit_choice(runs)
    print(f"weights travel as {TRANSIT_DTYPES[weights]}", flush=True)
    summary = {"command": this_command, "device": args.device, "minutes": args.minutes,
               "weights": TRANSIT_DTYPES[weights], "runs": []}
    logs = []
    for r in runs:
        entry = {"name": r["name"], "config": r["config"], "returncode": r["returncode"],
                 "stopped": r.get("stopped", False), "wall_minutes": r["wall_minutes"],
                 "files": {}}
        logs.append(f"===== {r['name']}: exit {r['returncode']} =====\n"
                    + log_text(r["out"] / "train.log"))
        if (r["out"] / "model.pt").is_file():
            extra = {"gpu_run": {"command": this_command, "config": r["config"],
                                 "recipe": json.loads((r["out"] / "config.json").read_text()),
                                 "train_command": shlex.join(r["command"][1:]),
                                 "returncode": r["returncode"]}}
            files = pack(r, out_dir, TRANSIT_DTYPES[weights], extra)
            import torch

            card = torch.load(files[0], map_location="cpu", weights_only=True)["card"]
            history = card.get("history", [])
            entry.update({
                "steps": history[-1]["step"] if history else 0,
                "val_bpd": card.get("val_bpd"), "training_minutes": card.get("training_minutes"),
                "hardware": card.get("hardware"), "history": history,
                "files": {p.name: {"bytes": p.stat().st_size, "sha256": sha256(p)}
                          for p in files}})
        else:
            entry["error"] = "no model.pt: the run ended before its first validation"
        summary["runs"].append(entry)
    summary["wall_minutes"] = round((time.time() - started) / 60, 2)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out_dir / "logs.txt").write_text("".join(logs)[-MAX_FILE_BYTES:])

    print(f"\n{'name':<28} {'exit':>4} {'steps':>7} {'best val bpd':>12} {'minutes':>8}")
    for e in summary["runs"]:
        val = f"{e['val_bpd']:.4f}" if e.get("val_bpd") is not None else "-"
        print(f"{e['name']:<28} {e['returncode']:>4} {e.get('steps', 0):>7} {val:>12} "
              f"{e.get('training_minutes') or '-':>8}")
    files = sorted(p for p in out_dir.iterdir() if p.is_file())
    if len(files) > MAX_FILES:
        print(f"warning: {len(files)} files in {out_dir}, more than the {MAX_FILES} that come "
              "back: use --weights bf16 or fewer configs", flush=True)
    print(f"{out_dir}: {len(files)} files, " + ", ".join(
        f"{p.name} {p.stat().st_size / 2**20:.1f} MiB" for p in files), flush=True)
    ok = all(e["files"] for e in summary["runs"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
