"""``python -m inpaint_app serve``: the web app (built in a later issue)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m inpaint_app")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start the web app")
    serve.add_argument("--port", type=int, default=7860)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--checkpoint", default=None)
    p.parse_args(argv)
    sys.exit("app not built yet: the Gradio app lands with its own issue; the library, "
             "`python -m pipelines.train` and `python -m pipelines.evaluate` work today")


if __name__ == "__main__":
    main()
