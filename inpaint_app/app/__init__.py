"""The Gradio web app: ``create_app`` builds it, ``serve`` runs it on 127.0.0.1.

    python -m inpaint_app serve [--models DIR] [--checkpoint C] [--port 7860] [--host H]
                                [--compile]

Layout lives in ``layout``, the actions in ``handlers`` (testable without a browser), the model
cache in ``registry``. Exposure is conservative: loopback unless told otherwise, no share link,
uploads capped at ``images.MAX_FILE_BYTES``, a queue with a concurrency limit.
"""

from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr

from ..compiled import compile_enabled
from ..images import MAX_FILE_BYTES
from .handlers import Handlers
from .layout import CSS, HEAD, build_app
from .registry import TRAINED_DIR, ModelCache, checkpoints_for

CONCURRENCY = 2  # requests computed at once; the rest wait in the queue
QUEUE_SIZE = 64  # waiting requests beyond this are refused with "queue full"

__all__ = ["create_app", "serve", "launch_kwargs", "ModelCache", "Handlers"]


def create_app(checkpoint: str | Path | None = None, *, root: str | Path = TRAINED_DIR,
               concurrency: int = CONCURRENCY, compile: bool = False) -> gr.Blocks:
    """The app over every bundle in the models folder ``root`` (plus ``checkpoint``, then the
    default), with its queue configured. Each bundle loads at start (``ModelCache.survey``);
    one that fails is skipped and listed on the Models tab with why, except ``checkpoint``,
    which must load. With ``compile`` (off where ``FLOWPAINT_COMPILE=0``) the default model's
    scoring pass, and each other model's on first use, compiles in the background
    (``inpaint_app.compiled``); requests run eagerly until it is ready, never waiting."""
    paths, default = checkpoints_for(checkpoint, root)
    cache = ModelCache.survey(paths, default, compile=compile_enabled(compile),
                              required=default if checkpoint is not None else None)
    if cache.compile:
        cache.preload()
    demo = build_app(Handlers(cache))
    return demo.queue(default_concurrency_limit=concurrency, max_size=QUEUE_SIZE)


def launch_kwargs(host: str = "127.0.0.1", port: int = 7860) -> dict:
    """The ``launch()`` settings every start uses: loopback, no share link, upload cap."""
    return {"server_name": host, "server_port": port, "share": False,
            "max_file_size": MAX_FILE_BYTES, "css": CSS, "head": HEAD, "show_error": False,
            "footer_links": ["api"]}


def serve(host: str = "127.0.0.1", port: int = 7860, checkpoint: str | Path | None = None,
          concurrency: int = CONCURRENCY, compile: bool = False,
          models: str | Path = TRAINED_DIR) -> None:
    """Build and run the app until interrupted. With ``compile`` (and not
    ``FLOWPAINT_COMPILE=0``) each model's scoring compiles in the background, and the server
    log says, in one line each, when a model's compiled scoring is ready or why it is not."""
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("inpaint_app").setLevel(logging.INFO)
    create_app(checkpoint, root=models, concurrency=concurrency, compile=compile).launch(
        **launch_kwargs(host, port))
