"""The checkpoints the app offers and a process-wide cache that loads each one once.

``ModelCache.survey`` loads every bundle of a models folder (``<DIR>/<name>/model.pt``) at start:
a shipped bundle (about 20 MB with its conditional flow) loads in about 0.3 s, and a full load is
the one check that catches every defect (an unloadable or unsafe file, a corrupt card, weights
that do not fit their config, a background or capture model or exemplar bank of another shape, a
conditional flow where an image model belongs). A bad bundle is skipped with its reason
(``ModelCache.skipped``), shown on the Models tab; the good ones stay loaded.

Every tab and every API call asks the same ``ModelCache``, so a model is read from disk once per
process and shared by all users (models are used in eval mode and never modified). With
``compile=True`` a model's first load also starts compiling its scoring pass, and its
background model's, in a daemon thread (``inpaint_app.compiled``): requests score eagerly
until that is done, never waiting for it.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import gradio as gr

from ..bundle import ModelBundle, load_bundle
from ..compiled import warm_in_background
from ..models import CheckpointError, ConfigError

TRAINED_DIR = Path(__file__).resolve().parents[2] / "trained"
DEFAULT_MODEL = "mnist-glow"
log = logging.getLogger(__name__)


def discover(root: str | Path = TRAINED_DIR) -> dict[str, Path]:
    """``{name: path}`` for every ``<root>/<name>/model.pt``, sorted by name."""
    root = Path(root)
    found = sorted(root.glob("*/model.pt")) if root.is_dir() else []
    return {path.parent.name: path for path in found}


def checkpoints_for(checkpoint: str | Path | None, root: str | Path = TRAINED_DIR
                    ) -> tuple[dict[str, Path], str]:
    """The offered checkpoints and the default one: ``checkpoint`` (a file or a folder holding
    ``model.pt``) joins those in ``root`` and becomes the default."""
    paths = discover(root)
    if checkpoint is not None:
        path = Path(checkpoint)
        path = path / "model.pt" if path.is_dir() else path
        if not path.is_file():
            raise CheckpointError(f"checkpoint not found: {path}")
        name = path.parent.name if path.name == "model.pt" else path.stem
        paths[name] = path
        return paths, name
    if not paths:
        raise CheckpointError(f"no models under {root} (none of its folders holds a "
                              "model.pt): train one, or pass --models DIR or --checkpoint")
    return paths, DEFAULT_MODEL if DEFAULT_MODEL in paths else next(iter(paths))


def why_unusable(err: Exception) -> str:
    """One line saying why a bundle cannot be served, from the error its load raised."""
    text = (str(err).splitlines() or [""])[0][:300]
    known = isinstance(err, CheckpointError | ConfigError)
    return text if known and text else f"{type(err).__name__}: {text}"


def load_checked(path: Path) -> ModelBundle:
    """The bundle in ``path``, its input recipe resolved too (an unknown one is a bad card);
    stale thresholds are logged (and shown on the Models tab), not refused."""
    bundle = load_bundle(path)
    note = bundle.stale_note  # raises ValueError for a card naming an unknown input recipe
    if note:
        log.warning("model %s: %s", path.parent.name, note)
    return bundle


class ModelCache:
    """Loads a named checkpoint on first use and hands the same bundle to every later caller."""

    def __init__(self, paths: dict[str, Path], default: str, *, compile: bool = False) -> None:
        if default not in paths:
            raise ValueError(f"default model {default!r} is not among {sorted(paths)}")
        self.paths, self.default, self.compile = dict(paths), default, compile
        self._models: dict[str, ModelBundle] = {}
        self._lock = threading.Lock()
        self.loads = 0  # how many times a file was read (tests check it stays one per model)
        self.warming: dict[str, threading.Thread] = {}  # compile warm-ups started, by model
        self.skipped: dict[str, str] = {}  # bundles not offered, with the reason (``survey``)

    @classmethod
    def survey(cls, paths: dict[str, Path], default: str, *, compile: bool = False,
               required: str | None = None) -> ModelCache:
        """A cache over the bundles of ``paths`` that load, each loaded now and kept; the others
        are listed in ``skipped`` with their reason. ``default`` falls back to the first good
        one when it is bad; a bad ``required`` one (``--checkpoint``), or none good, is a
        ``CheckpointError``."""
        loaded, skipped = {}, {}
        for name, path in paths.items():
            try:
                loaded[name] = load_checked(path)
            except Exception as err:  # noqa: BLE001 - any failure means "skip it, say why"
                skipped[name] = why_unusable(err)
        if required in skipped:
            raise CheckpointError(f"cannot load {paths[required]}: {skipped[required]}")
        if not loaded:
            reasons = "; ".join(f"{name}: {why}" for name, why in skipped.items())
            raise CheckpointError("no usable model" + (f" ({reasons})" if reasons else ""))
        cache = cls({name: paths[name] for name in loaded},
                    default if default in loaded else next(iter(loaded)), compile=compile)
        cache._models, cache.loads, cache.skipped = loaded, len(loaded), skipped
        return cache

    @property
    def names(self) -> list[str]:
        return list(self.paths)

    def get(self, name: str | None) -> ModelBundle:
        """The model called ``name`` (the default when empty) with what ships beside it;
        ``gr.Error`` for unknown names and unloadable files."""
        name = name or self.default
        if name not in self.paths:
            raise gr.Error(f"unknown model {name!r}: choose one of {', '.join(self.paths)}")
        with self._lock:
            if name not in self._models:
                try:
                    self._models[name] = load_bundle(self.paths[name])
                except (CheckpointError, ConfigError, RuntimeError) as err:
                    raise gr.Error(f"cannot load model {name!r}: {err}") from err
                self.loads += 1
            self._warm(name, self._models[name])
            return self._models[name]

    def _warm(self, name: str, bundle: ModelBundle) -> None:
        """Start compiling the scoring passes of a model on its first use (once)."""
        if self.compile and name not in self.warming:
            thread = warm_in_background({name: bundle.model,
                                         f"{name} background": bundle.background,
                                         f"{name} capture": bundle.capture})
            if thread is not None:
                self.warming[name] = thread

    def preload(self, name: str | None = None) -> threading.Thread:
        """Load ``name`` (the default) in a daemon thread, so that the first request finds it
        loaded and, with ``compile``, compiling; a load error is left for that request."""
        def load() -> None:
            try:
                self.get(name)
            except gr.Error:
                pass  # the request that asks for it reports it

        thread = threading.Thread(target=load, daemon=True, name="flowpaint-preload")
        thread.start()
        return thread
