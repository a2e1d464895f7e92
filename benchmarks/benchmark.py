"""Side-by-side benchmark: our flows against the same architectures built with normflows.

    python -m benchmarks.benchmark [--threads 1] [--families nice realnvp glow] [--quick]
    pip install -e ".[bench]"   # the peer library, only needed for the peer column

One run on one machine writes ``benchmarks/latest.json`` (rows ``{name, unit, ours, peer,
ratio, better}`` plus the machine's description) and ``benchmarks/latest.md``. Rows: training
throughput (the training step itself, ``inpaint_app.training.train_step``, batch 64), scoring
throughput (batch 256, ``torch.inference_mode``), peak memory (max-RSS delta in a fresh
subprocess per row), NICE's achieved GFLOP/s against a measured float32 matmul peak, and the
shipped MNIST model's scoring and inpainting speed. Ours and peer are timed in alternating
repeats and summarised by medians, so load from other processes hits both sides alike.
Never used as a timed test.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch import nn

from inpaint_app.bundle import ModelBundle, load_bundle
from inpaint_app.models import build_model
from inpaint_app.peers import (
    INSTALL_HINT,
    PEERS,
    RECIPES,
    SHAPE,
    PeerDensity,
    import_peer,
    machine,
    n_params,
)
from inpaint_app.training import LogProb, initialize_actnorm, train_step

DEFAULT_MODEL = Path("trained/mnist-glow")


# ---------------------------------------------------------------- timing helpers
def _images(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, *SHAPE), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


def build_pair(family: str, nf: object | None, actnorm_batch: int = 256
               ) -> dict[str, tuple[nn.Module, nn.Module]]:
    """{side: (runner, density)}: what ``train_step`` calls, and what owns the parameters."""
    torch.manual_seed(0)
    ours = build_model(family, image_shape=SHAPE, **RECIPES[family])
    pair = {"ours": (LogProb(ours), ours)}
    if nf is not None:
        peer = PeerDensity(PEERS[family](nf, **RECIPES[family]), flat=family == "nice")
        pair["peer"] = (peer, peer)
    warm = _images(actnorm_batch, 0)
    initialize_actnorm(ours, warm)
    if "peer" in pair:
        with torch.no_grad():
            pair["peer"][0](warm.float().add(0.5).div(256))  # normflows' ActNorm init
    return pair


def trainer(runner: nn.Module, density: nn.Module, batch_size: int, steps: int, *,
            fused: bool = False, amp: bool = False) -> Callable[[], float]:
    """A closure that runs ``steps`` training steps and returns images/s. The optimizer is
    plain Adam; ``fused`` uses the single-kernel Adam that ``pipelines.train`` uses, ``amp``
    bf16 autocast (``train --amp``)."""
    optimizer = torch.optim.Adam(density.parameters(), lr=1e-4, fused=fused or None)
    batches = [_images(batch_size, i) for i in range(steps)]
    train_step(runner, density, batches[0], optimizer, amp=amp)  # warm-up (allocations, Adam)

    def run() -> float:
        start = time.perf_counter()
        for batch in batches:
            train_step(runner, density, batch, optimizer, amp=amp)
        return steps * batch_size / (time.perf_counter() - start)

    return run


def scorer(runner: nn.Module, batch_size: int, calls: int) -> Callable[[], float]:
    """A closure that scores one batch ``calls`` times (inference mode); returns images/s."""
    runner.eval()
    y = _images(batch_size, 99).float().add(0.5).div(256)
    with torch.inference_mode():
        runner(y)

    def run() -> float:
        with torch.inference_mode():
            start = time.perf_counter()
            for _ in range(calls):
                runner(y)
            return calls * batch_size / (time.perf_counter() - start)

    return run


def matmul_gflops(n: int = 2048, calls: int = 4, dtype: torch.dtype = torch.float32
                  ) -> Callable[[], float]:
    """Measured matmul GFLOP/s at the current thread count (the roofline's peak)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b

    def run() -> float:
        start = time.perf_counter()
        for _ in range(calls):
            a @ b
        return 2 * n**3 * calls / (time.perf_counter() - start) / 1e9

    return run


def interleaved(contenders: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Median of each contender over ``repeats`` rounds, alternating who goes first."""
    results: dict[str, list[float]] = {k: [] for k in contenders}
    names = list(contenders)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            results[name].append(contenders[name]())
    return {k: statistics.median(v) for k, v in results.items()}


def nice_train_flops(hidden: int = 1000, depth: int = 5, couplings: int = 4) -> float:
    """Matmul FLOPs per image of one NICE training step: 3 x forward (backward ~ 2 x forward)."""
    half = math.prod(SHAPE) // 2
    macs = half * hidden + (depth - 1) * hidden * hidden + hidden * half
    return 3 * couplings * 2 * macs


# ---------------------------------------------------------------- rows
def row(name: str, unit: str, ours: float | None, peer: float | None = None,
        better: str = "higher") -> dict:
    """One table row; ratio is ours/peer (above 1 is better for us when ``better`` is higher)."""
    ratio = round(ours / peer, 3) if ours is not None and peer else None
    return {"name": name, "unit": unit, "ours": _round(ours), "peer": _round(peer), "ratio": ratio,
            "better": better}


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 4 if abs(v) < 1 else 1)


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:,.4g}" if abs(v) < 10 else f"{v:,.0f}"


def family_rows(family: str, nf: object | None, args: argparse.Namespace) -> list[dict]:
    pair = build_pair(family, nf)
    rows = [row(f"{family} parameters", "count", n_params(pair["ours"][1]),
                n_params(pair["peer"][1]) if "peer" in pair else None, better="equal")]
    contenders = {k: trainer(r, d, args.batch_size, args.steps) for k, (r, d) in pair.items()}
    if args.amp:  # both sides again under bf16 autocast, fresh models, the same plain Adam
        contenders.update({f"{k}_amp": trainer(r, d, args.batch_size, args.steps, amp=True)
                           for k, (r, d) in build_pair(family, nf).items()})
    if family == "nice":  # the roofline rows: fused Adam (as pipelines.train), by batch
        contenders["matmul"] = matmul_gflops()
        for batch in args.roofline_batches:  # GEMM efficiency rises with the batch
            contenders[f"fused_{batch}"] = trainer(*build_pair(family, None)["ours"], batch,
                                                   max(2, args.steps * 64 // batch), fused=True)
        if args.amp:
            contenders["matmul_bf16"] = matmul_gflops(dtype=torch.bfloat16)
            contenders["fused_amp"] = trainer(*build_pair(family, None)["ours"],
                                              args.batch_size, args.steps, fused=True, amp=True)
    train = interleaved(contenders, args.repeats)
    rows.append(row(f"{family} training (batch {args.batch_size})", "images/s",
                    train["ours"], train.get("peer")))
    if args.amp:
        rows.append(row(f"{family} training, bf16 autocast, both sides", "images/s",
                        train["ours_amp"], train.get("peer_amp")))
        rows.append(row(f"{family} training: ours bf16 (train --amp) vs peer float32",
                        "images/s", train["ours_amp"], train.get("peer")))
    if family == "nice":
        flops = nice_train_flops(**RECIPES["nice"])
        ours_gf, peer_gf = (None if k not in train else train[k] * flops / 1e9
                            for k in ("ours", "peer"))
        rows.append(row("matmul peak (float32, 2048^2)", "GFLOP/s", train["matmul"]))
        rows.append(row("nice training achieved", "GFLOP/s", ours_gf, peer_gf))
        rows.append(row("nice training / matmul peak", "fraction", ours_gf / train["matmul"],
                        peer_gf / train["matmul"] if peer_gf else None))
        for batch in args.roofline_batches:
            rows.append(row(f"nice training, fused Adam, batch {batch} / matmul peak",
                            "fraction", train[f"fused_{batch}"] * flops / 1e9 / train["matmul"]))
        if args.amp:
            amp_gf = train["fused_amp"] * flops / 1e9
            rows.append(row("matmul peak (bf16, 2048^2)", "GFLOP/s", train["matmul_bf16"]))
            rows.append(row("nice training, bf16 + fused Adam / bf16 matmul peak", "fraction",
                            amp_gf / train["matmul_bf16"]))
            rows.append(row("nice training, bf16 + fused Adam / float32 matmul peak",
                            "fraction", amp_gf / train["matmul"]))
    score = interleaved({k: scorer(r, args.score_batch, args.score_calls)
                         for k, (r, _) in pair.items()}, args.repeats)
    rows.append(row(f"{family} scoring (batch {args.score_batch})", "images/s",
                    score["ours"], score.get("peer")))
    for task in ("train", "score"):
        mem = {side: memory_probe(family, side, task, args) for side in pair}
        rows.append(row(f"{family} peak memory, {task}", "MiB", mem["ours"], mem.get("peer"),
                        better="lower"))
    return rows


def memory_probe(family: str, side: str, task: str, args: argparse.Namespace) -> float | None:
    """Peak-RSS growth (MiB) of a few steps of ``task``, in a fresh interpreter."""
    cmd = [sys.executable, "-m", "benchmarks.benchmark", "--probe", family, side, task,
           "--threads", str(torch.get_num_threads()), "--batch-size", str(args.batch_size),
           "--score-batch", str(args.score_batch)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        print(f"memory probe {family}/{side}/{task} failed: {out.stderr[-500:]}", file=sys.stderr)
        return None
    return float(out.stdout.strip().splitlines()[-1])


def run_probe(family: str, side: str, task: str, args: argparse.Namespace) -> None:
    """Child side of ``memory_probe``: prints the peak RSS minus the resident size just after
    the imports, in MiB (model, optimizer state and activations included)."""
    nf = import_peer() if side == "peer" else None
    before = _reset_peak_kib()
    runner, density = build_pair(family, nf, actnorm_batch=args.batch_size)[side]
    run = (trainer(runner, density, args.batch_size, 2) if task == "train"
           else scorer(runner, args.score_batch, 1))
    run()
    print((_peak_kib() - before) / 1024)


def _reset_peak_kib() -> float:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux) and return that RSS in KiB.

    ``ru_maxrss`` survives fork + exec, so a child started by a big parent would report the
    parent's size; ``/proc/self/clear_refs`` with 5 resets the mark (``VmHWM``) instead.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _proc_status_kib("VmRSS")
    except OSError:
        return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _peak_kib() -> float:
    try:
        return _proc_status_kib("VmHWM")
    except OSError:
        return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _proc_status_kib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def default_model_rows(args: argparse.Namespace) -> list[dict]:
    """The shipped MNIST Glow: scoring throughput, and inpainting latency when available."""
    if not (DEFAULT_MODEL / "model.pt").is_file():
        return []
    bundle = load_bundle(DEFAULT_MODEL)
    score = interleaved({"ours": scorer(LogProb(bundle.model), args.score_batch,
                                        args.score_calls)},
                        args.repeats)
    rows = [row(f"default MNIST model scoring (batch {args.score_batch})", "images/s",
                score["ours"])]
    return rows + verdict_rows(bundle, args) + inpaint_rows(bundle, args)


def verdict_rows(bundle: ModelBundle, args: argparse.Namespace) -> list[dict]:
    """The default verdict (``evidence``: four flow passes, the background pass, PNG sizes and
    the exemplar search) on 512 MNIST test images ($FLOWPAINT_DATA; random pixels without the
    data): eager in a fresh interpreter (as ``score_batch`` meets it), eager here after the rows
    above, then with the scoring pass compiled as the app does it (``inpaint_app.compiled``),
    and that compile's warm-up time."""
    from inpaint_app.compiled import register, unregister

    timed = verdict_timer(bundle)
    rows = [row("default verdict (evidence), eager, fresh process", "images/s",
                fresh_verdict(args)),
            row("default verdict (evidence), eager, after the rows above", "images/s",
                interleaved({"ours": timed}, args.repeats)["ours"])]
    start = time.perf_counter()
    models = [m for m in (bundle.model, bundle.background) if m is not None]
    warm = all([register(m).warm_up(256) for m in models])
    seconds = time.perf_counter() - start
    if warm:
        rows += [row("default verdict (evidence), scoring pass compiled", "images/s",
                     interleaved({"ours": timed}, args.repeats)["ours"]),
                 row("compile warm-up of the scoring passes (app start, background)", "s",
                     seconds, better="lower")]
    for m in models:
        unregister(m)
    return [r for r in rows if r["ours"] is not None]


def verdict_timer(bundle: ModelBundle) -> Callable[[], float]:
    """A function that scores 512 MNIST test images and returns images/s, warmed up once."""
    from inpaint_app.anomaly import score_images
    from inpaint_app.data import DatasetNotFound, load_split

    try:
        images = load_split("mnist", "test", None)[:512]
    except DatasetNotFound:
        images = _images(512, 11)

    def verdict() -> float:
        start = time.perf_counter()
        score_images(bundle, images)
        return len(images) / (time.perf_counter() - start)

    score_images(bundle, images[:64])  # warm-up: allocations, the LU cache
    return verdict


def fresh_verdict(args: argparse.Namespace) -> float | None:
    """Eager verdict images/s (median of ``--repeats``) in a fresh interpreter."""
    threads = args.threads or torch.get_num_threads()
    cmd = [sys.executable, "-m", "benchmarks.benchmark", "--verdict-probe",
           "--threads", str(threads), "--repeats", str(args.repeats)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0 or not out.stdout.strip():
        print(f"verdict probe failed: {out.stderr[-500:]}", file=sys.stderr)
        return None
    return float(out.stdout.strip().splitlines()[-1])


def inpaint_rows(model: ModelBundle, args: argparse.Namespace) -> list[dict]:
    """Single-image p50/p95 and a batch of 64 with default settings (no peer equivalent)."""
    try:
        from inpaint_app.inpainting import inpaint, inpaint_batch
    except ImportError:
        print("inpaint_app.inpainting not found: inpainting rows left out", file=sys.stderr)
        return []
    images = _images(64, 7)
    masks = torch.zeros(64, *SHAPE[1:], dtype=torch.bool)
    masks[:, 10:20, 6:22] = True
    inpaint(model, images[0], masks[0])  # warm-up
    times = []
    for i in range(args.inpaint_calls):
        start = time.perf_counter()
        inpaint(model, images[i % 64], masks[i % 64])
        times.append(time.perf_counter() - start)
    qs = statistics.quantiles(times, n=20, method="inclusive")
    start = time.perf_counter()
    inpaint_batch(model, images, masks)
    batch_s = time.perf_counter() - start
    return [row("default model inpainting, one image p50", "s", qs[9], better="lower"),
            row("default model inpainting, one image p95", "s", qs[18], better="lower"),
            row("default model inpainting, batch of 64", "s", batch_s, better="lower")]


# ---------------------------------------------------------------- report


def to_markdown(report: dict) -> str:
    m = report["machine"]
    head = (f"`{report['command']}` on {m['cpu']} ({m['cores']} cores, {m['torch_threads']} "
            f"torch thread(s), torch {m['torch']}, normflows {m['normflows']}), "
            f"{report['date']}; load average at start {report['load_start']}, at end "
            f"{m['load_average']}. Ratio = ours / peer; medians of alternating repeats.")
    lines = [head, "", "| row | unit | ours | normflows | ours/peer |", "|---|---|---:|---:|---:|"]
    for r in report["rows"]:
        lines.append(f"| {r['name']} | {r['unit']} | {_fmt(r['ours'])} | {_fmt(r['peer'])} | "
                     f"{'-' if r['ratio'] is None else format(r['ratio'], '.2f')} |")
    return "\n".join(lines) + "\n"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Ours vs normflows: throughput, latency, memory.")
    p.add_argument("--families", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    p.add_argument("--steps", type=int, default=5, help="training steps per timed repeat")
    p.add_argument("--repeats", type=int, default=5, help="alternating ours/peer rounds")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--score-batch", type=int, default=256)
    p.add_argument("--roofline-batches", type=int, nargs="+", default=[64, 256, 1024],
                   help="batches of the NICE roofline rows (fused Adam, as pipelines.train)")
    p.add_argument("--score-calls", type=int, default=2, help="scoring calls per repeat")
    p.add_argument("--inpaint-calls", type=int, default=20)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-amp", dest="amp", action="store_false",
                   help="leave out the bf16 autocast training rows")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny batches, one repeat")
    p.add_argument("--no-default-model", action="store_true")
    p.add_argument("--out", default="benchmarks")
    p.add_argument("--probe", nargs=3, metavar=("FAMILY", "SIDE", "TASK"), help=argparse.SUPPRESS)
    p.add_argument("--verdict-probe", action="store_true",
                   help="only print the shipped model's eager verdict images/s (median of "
                        "--repeats) in this fresh process, as make bench's row measures it")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.repeats, args.batch_size, args.score_batch = 1, 1, 8, 16
        args.score_calls, args.inpaint_calls, args.roofline_batches = 1, 3, [8, 16]
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.probe:
        run_probe(*args.probe, args)
        return {}
    if args.verdict_probe:  # child of fresh_verdict
        timed = verdict_timer(load_bundle(DEFAULT_MODEL))
        print(statistics.median(timed() for _ in range(args.repeats)))
        return {}
    nf = import_peer()
    if nf is None:
        print(f"normflows is not installed: peer column left empty ({INSTALL_HINT})",
              file=sys.stderr)
    load_start = os.getloadavg()
    rows: list[dict] = []
    for family in args.families:
        rows += family_rows(family, nf, args)
        print("\n".join(json.dumps(r) for r in rows[-8:]), flush=True)
    if not args.no_default_model:
        rows += default_model_rows(args)
    command = "python -m benchmarks.benchmark " + " ".join(argv if argv is not None
                                                           else sys.argv[1:])
    report = {"command": command.strip(), "date": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": machine(nf), "load_start": load_start, "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    md = to_markdown(report)
    (out / "latest.md").write_text(md)
    print(md)
    return report


if __name__ == "__main__":
    main()
