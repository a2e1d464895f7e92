"""Concurrency: 32 simultaneous inpaint and score requests through ``gradio_client``.

Marked slow but bounded (a tiny model, 32 requests), so CI runs it. Each request carries its own
image; the answer must belong to that image (no cross-talk between queued requests), and the
server's memory must stay bounded. ``python tests/test_load.py --soak N`` repeats the burst N
times against a running server for manual soak runs.
"""

from __future__ import annotations

import resource
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inpaint_app.anomaly import calibrate, score_images
from inpaint_app.app import create_app, launch_kwargs
from inpaint_app.models import build_model, load_model, save_model

SHAPE = (1, 8, 8)
REQUESTS = 32
pytestmark = pytest.mark.filterwarnings("ignore:.*no_silent_downcasting",
                                        "ignore:The copy keyword is deprecated")


def _image(i: int) -> np.ndarray:
    """A distinct 8x8 image per request: a bar whose row and brightness encode ``i``."""
    array = np.full((8, 8), 10 + 3 * i, dtype=np.uint8)
    array[i % 8] = 255
    return array


def burst(url: str, folder: Path, model: str, n: int = REQUESTS) -> list[tuple[str, int, object]]:
    """Send n requests at once, half inpaint, half score; return (kind, index, answer)."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    paths = []
    for i in range(n):
        path = folder / f"req-{i:02d}.png"
        Image.fromarray(_image(i)).save(path)
        paths.append(path)

    def one(i: int) -> tuple[str, int, object]:
        if i % 2:
            table = client.predict([handle_file(str(paths[i]))], model, api_name="/score")[0]
            return "score", i, table
        editor = {"background": handle_file(str(paths[i])), "layers": [], "composite": None}
        filled = client.predict(editor, model, "top", "default", 3, 1, 0,
                                api_name="/inpaint")[0]
        return "inpaint", i, np.asarray(Image.open(filled).convert("L"))

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(one, range(n)))


@pytest.mark.slow
def test_32_concurrent_requests_each_get_their_own_answer(tmp_path: Path, free_port) -> None:
    torch.manual_seed(0)
    model = build_model("glow", image_shape=SHAPE, steps=2).eval()
    val = torch.randint(0, 256, (200, *SHAPE), dtype=torch.uint8)
    card = {"dataset": "noise", "model": "glow", "test_bpd": 8.0, "training_minutes": 0.0,
            "hardware": "none", "command": "tests/test_load.py",
            "anomaly": calibrate(model, val, fpr=0.05, source="noise val (200)")}
    save_model(model, tmp_path / "trained" / "tiny-glow" / "model.pt", card)
    reference = load_model(tmp_path / "trained" / "tiny-glow" / "model.pt")

    demo = create_app(root=tmp_path / "trained")
    demo.launch(**{**launch_kwargs(port=free_port()), "prevent_thread_lock": True,
                   "quiet": True})
    try:
        burst(demo.local_url, tmp_path, "tiny-glow", n=4)  # warm up: model load, first calls
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        answers = burst(demo.local_url, tmp_path, "tiny-glow")
        burst(demo.local_url, tmp_path, "tiny-glow")
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    finally:
        demo.close()

    assert len(answers) == REQUESTS
    for kind, i, answer in answers:
        image = _image(i)
        if kind == "inpaint":  # the top half was filled; the bottom half is this request's own
            assert answer.shape == (8, 8)
            assert np.array_equal(answer[4:], image[4:]), f"request {i} got another image"
        else:
            row = dict(zip(answer["headers"], answer["data"][0], strict=True))
            expected = score_images(reference, torch.from_numpy(image)[None, None])[0]["bpd"]
            assert row["file"] == f"req-{i:02d}.png"
            assert abs(float(row["bits/dim"]) - expected) < 1e-3, f"request {i} got another score"
    # A second full burst may not grow the server (same process) by more than 200 MB.
    assert (rss_after - rss_before) / 1024 < 200


if __name__ == "__main__":  # manual soak: python tests/test_load.py URL MODEL ROUNDS
    import tempfile

    url, name, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            burst(url, Path(tmp), name)
            print(f"round {r + 1}/{rounds}: {REQUESTS} requests ok", flush=True)
