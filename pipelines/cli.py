"""``flowpaint``: one command for what users run, each subcommand the pipeline of the same job.

    flowpaint serve                     # the web app on http://127.0.0.1:7860
    flowpaint train --config pipelines/configs/mnist-glow-cpu.json
    flowpaint score --checkpoint trained/mnist-glow --images FOLDER --out scores.csv
    flowpaint <command> --help          # that pipeline's own options
    flowpaint --version                 # the installed package's version

``python -m pipelines.<module>`` keeps working: a subcommand only imports its module and hands it
the remaining arguments. Lab tooling (benchmarks, GPU runs) is no subcommand: it runs from a
checkout as ``python -m benchmarks.<module>``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys

# subcommand -> (module with main(argv), what it does)
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("inpaint_app.__main__", "serve the web app (inpaint, anomaly, model tabs)"),
    "train": ("pipelines.train", "train a flow by maximum likelihood; writes model.pt + card"),
    "evaluate": ("pipelines.evaluate", "test-set bits/dim of a checkpoint"),
    "calibrate": ("pipelines.calibrate", "anomaly thresholds on validation images, into the card"),
    "score": ("pipelines.score_batch",
              "anomaly scores of a folder: --checkpoint C --images DIR --out CSV"),
    "inpaint": ("pipelines.inpaint_batch", "inpaint a folder of images with masks"),
    "ood-eval": ("pipelines.ood_eval", "out-of-distribution evaluation of the anomaly scores"),
    "folder-eval": ("pipelines.folder_eval",
                    "AUROC of a model on your folders: its own kind against others"),
    "tune-inpainter": ("pipelines.tune_inpainter",
                       "tune a conditional flow's settings; --install puts it in a bundle"),
    "exemplars": ("pipelines.exemplars", "build a model's exemplar bank"),
    "folder-inpainter": ("pipelines.folder_inpainter",
                         "train a folder bundle's conditional flow, for anomaly maps"),
}

# Lab tooling that left the user's commands (issue 37): ``python -m benchmarks.<module>`` from a
# checkout runs it. Named here only to point a caller of the old subcommand there.
LAB_COMMANDS: dict[str, str] = {
    "benchmark": "benchmarks.inpaint_benchmark",
    "families": "benchmarks.families",
    "peer-benchmark": "benchmarks.benchmark",
    "time-to-quality": "benchmarks.time_to_quality",
    "pack-data": "benchmarks.pack_data",
    "gpu-run": "benchmarks.gpu_run",
    "gpu-home": "benchmarks.gpu_home",
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    return ("usage: flowpaint <command> [options]\n\ncommands:\n"
            + "\n".join(f"  {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items())
            + "\n\n'flowpaint <command> --help' lists a command's options;"
            + " 'flowpaint --version' prints the version.")


def version() -> str:
    """The installed package's version (``pyproject.toml``'s, as pip recorded it)."""
    try:
        return importlib.metadata.version("flowpaint")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (flowpaint is not installed: pip install -e .)"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if args[0] in ("-V", "--version"):
        print(f"flowpaint {version()}")
        return 0
    name, rest = args[0], args[1:]
    if name in LAB_COMMANDS:
        print(f"flowpaint: {name!r} is lab tooling, not a flowpaint command: run "
              f"'python -m {LAB_COMMANDS[name]}' from a checkout of the repository",
              file=sys.stderr)
        return 2
    if name not in COMMANDS:
        print(f"flowpaint: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    if name == "serve":
        rest = ["serve", *rest]
    sys.argv[0] = f"flowpaint {name}"  # argparse names the program after it in usage lines
    result = module.main(rest)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
