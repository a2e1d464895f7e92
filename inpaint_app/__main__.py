"""``python -m inpaint_app serve``: the web app on http://127.0.0.1:7860.

    python -m inpaint_app serve [--models DIR] [--checkpoint C] [--port 7860]
                                [--host 127.0.0.1] [--compile]

Offers every bundle ``DIR/<name>/model.pt`` of the models folder (default: trained/) that loads;
the others are skipped and listed, with why, on the Models tab. Binds loopback by default;
``--host 0.0.0.0`` exposes it (add Gradio authentication first). The models load at start and
score eagerly. ``--compile`` also compiles each model's scoring pass in the background
(``inpaint_app.compiled``): off by default, since on CPU it took minutes of both cores at start,
slowed requests 3-4x meanwhile, and scored no faster than eager (issue 36.7).
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m inpaint_app")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start the web app")
    serve.add_argument("--port", type=int, default=7860)
    serve.add_argument("--host", default="127.0.0.1",
                       help="interface to bind (default loopback only)")
    serve.add_argument("--models", default=None, metavar="DIR",
                       help="folder of bundles, each DIR/<name>/model.pt (default: trained/)")
    serve.add_argument("--checkpoint", default=None,
                       help="model.pt or its folder, offered with those of --models and "
                            "selected first (default: mnist-glow, else the first)")
    serve.add_argument("--concurrency", type=int, default=2,
                       help="requests computed at once; the rest queue")
    serve.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    serve.add_argument("--compile", action="store_true",
                       help="torch.compile each model's scoring in the background (default: "
                            "eager; FLOWPAINT_COMPILE=0 keeps it off even with --compile)")
    serve.add_argument("--no-compile", dest="compile", action="store_false",
                       help=argparse.SUPPRESS)  # the default now; kept for older scripts
    args = p.parse_args(argv)

    import torch

    from .app import serve as run_server
    from .app.registry import TRAINED_DIR
    from .models import CheckpointError

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        run_server(args.host, args.port, args.checkpoint, args.concurrency, compile=args.compile,
                   models=args.models or TRAINED_DIR)
    except CheckpointError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
