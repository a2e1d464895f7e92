"""The web app's handlers, model cache, command line and API (through ``gradio_client``).

Handlers run on a tiny untrained Glow over 8x8 images, calibrated on random images, so every
test is fast; the API test starts the real server on a free loopback port.
"""

from __future__ import annotations

import socket
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from inpaint_app.__main__ import main
from inpaint_app.anomaly import DEFAULT_SCORE, calibrate
from inpaint_app.app import create_app, launch_kwargs
from inpaint_app.app.handlers import MAX_FILES, TABLE_COLUMNS, Handlers, painted_mask
from inpaint_app.app.registry import DEFAULT_MODEL, ModelCache, checkpoints_for, discover
from inpaint_app.models import CheckpointError, build_model, save_model

SHAPE = (1, 8, 8)
# Gradio's queue calls pandas options that pandas 3 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:.*no_silent_downcasting",
                                        "ignore:The copy keyword is deprecated")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``trained/``-like folder with one tiny calibrated checkpoint."""
    torch.manual_seed(0)
    model = build_model("glow", image_shape=SHAPE, steps=2).eval()
    val = torch.randint(0, 256, (200, *SHAPE), dtype=torch.uint8)
    card = {"dataset": "noise", "model": "glow", "test_bpd": 8.1, "test_bpd_stderr": 0.01,
            "training_minutes": 0.0, "hardware": "none", "command": "tests/test_app.py",
            "anomaly": calibrate(model, val, fpr=0.05, source="noise val (200)")}
    folder = tmp_path_factory.mktemp("trained")
    save_model(model, folder / "tiny-glow" / "model.pt", card)
    return folder


@pytest.fixture(scope="module")
def handlers(root: Path) -> Handlers:
    paths, default = checkpoints_for(None, root)
    return Handlers(ModelCache(paths, default))


def _digit(size: int = 8) -> Image.Image:
    """A bright bar on black, like a thin digit."""
    array = np.zeros((size, size), np.uint8)
    array[1:-1, size // 2 - 1:size // 2 + 1] = 230
    return Image.fromarray(array)


def _strokes(size: int, rows: slice, cols: slice) -> Image.Image:
    """An RGBA layer, transparent except an opaque magenta rectangle (a brush stroke)."""
    layer = np.zeros((size, size, 4), np.uint8)
    layer[rows, cols] = (255, 0, 255, 255)
    return Image.fromarray(layer, "RGBA")


def _editor(background: Image.Image, *layers: Image.Image) -> dict:
    return {"background": background.convert("RGBA"), "layers": list(layers), "composite": None}


def test_discover_lists_every_shipped_checkpoint() -> None:
    paths, default = checkpoints_for(None)
    assert set(paths) == set(discover())
    assert "mnist-glow" in paths and default == DEFAULT_MODEL
    with pytest.raises(CheckpointError, match="not found"):
        checkpoints_for("/nonexistent/model.pt")


def test_cache_loads_each_model_once(root: Path) -> None:
    cache = ModelCache(*checkpoints_for(None, root))
    first, second = cache.get("tiny-glow"), cache.get("")
    assert first is second and cache.loads == 1
    with pytest.raises(gr.Error, match="unknown model"):
        cache.get("../../etc/passwd")


def test_painted_mask_keeps_thin_strokes_when_downscaling() -> None:
    mask = painted_mask([_strokes(80, slice(30, 33), slice(0, 80))], (8, 8))
    assert mask.shape == (8, 8) and mask.dtype == torch.bool
    assert mask[3].all() and mask.sum() == 8
    assert not painted_mask([_strokes(80, slice(0, 0), slice(0, 0))], (8, 8)).any()


def test_inpaint_changes_only_painted_pixels(handlers: Handlers) -> None:
    image = _digit()
    editor = _editor(image, _strokes(8, slice(2, 5), slice(2, 6)))
    filled, samples, uncertainty, trajectory, view, summary, metrics = handlers.inpaint(
        editor, "tiny-glow", "painted", "default", 20, 1, 0)
    before, after = np.asarray(image), np.asarray(filled)
    mask = np.zeros((8, 8), bool)
    mask[2:5, 2:6] = True
    assert after.shape == before.shape
    assert (after[~mask] == before[~mask]).all()
    assert samples == [] and uncertainty is None
    assert isinstance(trajectory, pd.DataFrame)
    assert list(trajectory.columns) == ["step", "bits/dim"]
    assert (np.asarray(view)[mask] == (255, 0, 255)).all()
    assert metrics["missing_pixels"] == 12 and "bits/dim" in summary
    assert {"bpd_before", "bpd_after", "steps", "seconds", "fit"} <= set(metrics)


def test_inpaint_langevin_gives_samples_and_uncertainty(handlers: Handlers) -> None:
    out = handlers.inpaint(_editor(_digit()), "tiny-glow", "center", "langevin", 10, 3, 1)
    filled, samples, uncertainty = out[:3]
    assert len(samples) == 3 and all(s.size == (8, 8) for s in samples)
    assert uncertainty is not None and uncertainty.size == (8, 8)


def test_inpaint_resizes_a_large_rgb_upload(handlers: Handlers) -> None:
    big = _digit(64).convert("RGB")
    out = handlers.inpaint(_editor(big), "tiny-glow", "bottom", "nice", 5, 1, 0)
    assert out[0].size == (8, 8) and "resized to 8x8" in out[6]["fit"]


@pytest.mark.parametrize(("editor", "mask", "method", "steps", "message"), [
    (None, "painted", "default", 10, "no image"),
    ({"background": None, "layers": []}, "painted", "default", 10, "no image"),
    ("digit", "painted", "default", 10, "mask is empty"),
    ("digit", "nowhere", "default", 10, "unknown mask"),
    ("digit", "top", "magic", 10, "unknown method"),
    ("digit", "top", "default", -1, "steps must be"),
    ("digit", "top", "default", 2.5, "steps must be"),
    ("digit", "top", "default", float("nan"), "steps must be"),
])
def test_inpaint_refuses_bad_input(handlers: Handlers, editor: object, mask: str, method: str,
                                   steps: float, message: str) -> None:
    editor = _editor(_digit()) if editor == "digit" else editor
    with pytest.raises(gr.Error, match=message):
        handlers.inpaint(editor, "tiny-glow", mask, method, steps, 1, 0)


def test_score_gives_a_verdict_per_image_and_keeps_going(handlers: Handlers,
                                                         tmp_path: Path) -> None:
    good, noise = tmp_path / "digit.png", tmp_path / "noise.png"
    _digit(28).save(good)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8), np.uint8)).save(noise)
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"not an image at all")
    huge = tmp_path / "huge.png"
    huge.write_bytes(b"\0" * (20 * 2**20 + 1))
    table, histogram, note = handlers.score([str(good), str(noise), str(fake), str(huge)],
                                            "tiny-glow")
    assert list(table.columns) == TABLE_COLUMNS and len(table) == 4
    assert set(table["verdict"][:2]) <= {"anomalous", "in distribution"}
    assert table["verdict"][2] == "unreadable" and "not an image" in table["note"][2]
    assert table["verdict"][3] == "unreadable" and "larger than" in table["note"][3]
    assert 0 < table["p-value"][0] <= 1 and "resized to 8x8" in table["note"][0]
    assert histogram is not None and histogram.size[0] > 100
    assert DEFAULT_SCORE in note and "mislead" in note


def test_score_refuses_no_files_and_too_many(handlers: Handlers) -> None:
    with pytest.raises(gr.Error, match="no images"):
        handlers.score([], "tiny-glow")
    with pytest.raises(gr.Error, match="at most"):
        handlers.score(["x.png"] * (MAX_FILES + 1), "tiny-glow")


def test_sample_and_card(handlers: Handlers) -> None:
    images = handlers.sample("tiny-glow", 3, 0.7, 0)
    assert len(images) == 3 and images[0].size == (8, 8)
    assert [np.asarray(i).tolist() for i in handlers.sample("tiny-glow", 3, 0.7, 0)] == \
        [np.asarray(i).tolist() for i in images]
    with pytest.raises(gr.Error, match="temperature"):
        handlers.sample("tiny-glow", 3, 9.0, 0)
    card = handlers.card("tiny-glow")
    assert "noise" in card and "8.1" in card and f"{DEFAULT_SCORE} (flag)" in card


def test_shipped_card_renders(handlers: Handlers) -> None:
    cache = ModelCache(*checkpoints_for(None))
    card = Handlers(cache).card("mnist-glow")
    assert "mnist" in card and "test bits/dim" in card and "training" in card


def test_cli_reports_a_missing_checkpoint() -> None:
    with pytest.raises(SystemExit, match="checkpoint not found"):
        main(["serve", "--checkpoint", "/nonexistent/model.pt"])


def test_launch_is_loopback_without_share() -> None:
    settings = launch_kwargs()
    assert settings["server_name"] == "127.0.0.1" and settings["share"] is False
    assert settings["max_file_size"] == 20 * 2**20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_every_action_through_gradio_client(root: Path, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    demo = create_app(root=root)
    demo.launch(**{**launch_kwargs(port=_free_port()), "prevent_thread_lock": True,
                   "quiet": True})
    try:
        client = Client(demo.local_url, verbose=False)
        image = tmp_path / "digit.png"
        _digit().save(image)
        table = client.predict([handle_file(str(image))], "tiny-glow", api_name="/score")[0]
        assert table["headers"] == TABLE_COLUMNS and len(table["data"]) == 1
        editor = {"background": handle_file(str(image)), "layers": [], "composite": None}
        filled, *_, metrics = client.predict(editor, "tiny-glow", "top", "default", 5, 1, 0,
                                             api_name="/inpaint")
        assert Image.open(filled).size == (8, 8) and metrics["missing_pixels"] == 32
        gallery = client.predict("tiny-glow", 2, 0.5, 0, api_name="/sample")
        assert len(gallery) == 2
        assert "tiny-glow" in client.predict("tiny-glow", api_name="/model_card")
        with pytest.raises(Exception, match="mask is empty"):
            client.predict(editor, "tiny-glow", "painted", "default", 5, 1, 0,
                           api_name="/inpaint")
    finally:
        demo.close()


@pytest.mark.slow
def test_no_user_path_reaches_the_filesystem(root: Path, tmp_path: Path) -> None:
    """A raw API call naming a server-side file (not uploaded) is refused before the handler."""
    import httpx

    secret = tmp_path / "secret.png"
    _digit().save(secret)
    demo = create_app(root=root)
    demo.launch(**{**launch_kwargs(port=_free_port()), "prevent_thread_lock": True,
                   "quiet": True})
    try:
        url = demo.local_url.rstrip("/") + "/gradio_api/call/score"
        payload = {"data": [[{"path": str(secret), "meta": {"_type": "gradio.FileData"}}],
                            "tiny-glow"]}
        event = httpx.post(url, json=payload, timeout=30).json()["event_id"]
        stream = httpx.get(f"{url}/{event}", timeout=60).text
        assert "event: error" in stream and "secret" not in stream.split("event: error")[1]
    finally:
        demo.close()
