"""The prepared GPU run (benchmarks.gpu_run), with the CPU standing in for the GPU, brought home
(benchmarks.gpu_home): what comes back fits the borrowed machine's limits, and loads and scores."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.gpu_run import MAX_FILE_BYTES, pack, transit_choice, transit_state
from inpaint_app import load_model
from inpaint_app.models import read_card

ROOT = Path(__file__).resolve().parents[1]
TINY = {"dataset": "mnist", "model": "glow", "hparams": {"steps": 2, "hidden": 16},
        "epochs": 100, "batch_size": 32, "lr": 1e-3, "warmup": 20, "limit_train": 512,
        "limit_val": 256, "device": "cuda", "eval_test": True}


def test_the_gpu_path_imports_nothing_app_only() -> None:
    """The borrowed machine has torch, torchvision, numpy, scipy, tqdm, pillow, scikit-image and
    torchdiffeq, and no gradio: the training path must not import an app-only package."""
    code = ("import sys, benchmarks.gpu_run, pipelines.train, benchmarks.pack_data\n"
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    loaded = set(subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.split())
    assert not loaded & {"gradio", "gradio_client", "playwright", "fastapi", "uvicorn", "httpx",
                         "pandas", "matplotlib", "huggingface_hub"}


def test_big_checkpoints_are_split_and_restored(tmp_path: Path) -> None:
    """A checkpoint over the file limit travels in parts that restore its float32 weights."""
    from benchmarks.gpu_home import collect, restore

    state = {"a": torch.randn(3, 1000, 1000), "b": torch.randn(1000, 1000),
             "steps": torch.tensor(7)}
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"config": {"family": "x"}, "state_dict": state, "card": {"val_bpd": 1.0}},
               run / "model.pt")
    (tmp_path / "out").mkdir()
    files = pack({"name": "big", "out": run}, tmp_path / "out", "float32", {})
    assert [p.name for p in files] == ["big.part0.pt", "big.part1.pt"]
    assert all(p.stat().st_size <= MAX_FILE_BYTES for p in files)
    back = restore(collect(tmp_path / "out")["big"], None)
    assert all(torch.equal(back["state_dict"][k], v) for k, v in state.items())
    runs = [{"out": run}] * 3  # 2 parts each: 6 + summary + logs fit in 8; with 4 runs, bf16
    assert transit_choice(runs) == "fp32" and transit_choice(runs + runs[:1]) == "bf16"
    half, dtypes = transit_state(state, "bfloat16")
    assert half["a"].dtype == torch.bfloat16 and half["steps"].dtype == torch.int64
    assert dtypes == {"a": "float32", "b": "float32"}


@pytest.mark.data
@pytest.mark.slow
def test_gpu_run_on_the_cpu_then_home(data_root: Path, tmp_path: Path) -> None:
    """The GPU command with a 20-second budget on packed MNIST and a tiny config, then home."""
    from benchmarks.pack_data import pack as pack_data

    packed = tmp_path / "gpu-data"
    pack_data("mnist", data_root, packed, level=1)
    config = tmp_path / "tiny-glow.json"
    config.write_text(json.dumps(TINY))
    out, runs = tmp_path / "OUT", tmp_path / "runs"
    env = {k: v for k, v in os.environ.items() if k != "FLOWPAINT_DATA"}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_run", "--device", "cpu", "--minutes", "0.33",
         "--threads", "1", "--weights", "bf16", "--data-root", str(packed),
         "--runs", str(runs / "gpu"), "--out", str(out), str(config)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "best val bpd" in done.stdout
    files = [p for p in out.rglob("*") if p.is_file()]
    assert sorted(p.name for p in files) == ["logs.txt", "summary.json", "tiny-glow.pt"]
    assert len(files) <= 8
    for p in files:
        assert p.stat().st_size < 16 * 2**20
        assert re.fullmatch(r"[A-Za-z0-9._-]+", p.name)
        assert p.parent == out
    summary = json.loads((out / "summary.json").read_text())
    (run,) = summary["runs"]
    assert run["returncode"] == 0 and run["steps"] > 0 and run["history"]
    sent = torch.load(out / "tiny-glow.pt", weights_only=True)
    floats = [v for v in sent["state_dict"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.bfloat16 for v in floats)
    assert sent["card"]["gpu_run"]["recipe"]["eval_test"] is False
    assert "test_bpd" not in sent["card"]
    # the validation figure says what it covers in fields: the first limit_val images
    assert (sent["card"]["val_images"], sent["card"]["val_subset"]) == (256, "first")

    home = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_home", str(out), "--data-root", str(data_root),
         "--limit-test", "200", "--threads", "1", "--runs", str(runs / "gpu-home")],
        cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert home.returncode == 0, home.stdout + home.stderr
    model = load_model(runs / "gpu-home" / "tiny-glow" / "model.pt")
    assert all(v.dtype != torch.bfloat16 for v in model.state_dict().values())
    card = json.loads((runs / "gpu-home" / "tiny-glow" / "card.json").read_text())
    assert card["trained_on"] and "bfloat16" in card["precision_note"]
    assert card["test_bpd"] == read_card(runs / "gpu-home" / "tiny-glow").test_bpd
    assert 1.0 < card["test_bpd"] < 8.0
    assert (card["test_images"], card["test_subset"]) == (200, "random")  # --limit-test 200
    assert (card["val_images"], card["val_subset"]) == (256, "first")
    x = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    with torch.inference_mode():
        assert torch.isfinite(model.bits_per_dim(x)).all()
    assert (runs / "gpu-home" / "tiny-glow" / "samples.png").is_file()


def test_shipping_keeps_the_replaced_models_choice_of_evidence_parts() -> None:
    from benchmarks.gpu_home import kept_parts
    from inpaint_app.card import ModelCard

    chosen = ["complexity", "exemplar_distance", "exemplar_shape"]
    card = ModelCard(anomaly={"scores": {"evidence": {"parts": {}, "chosen_parts": chosen}}})
    assert kept_parts(card) == ["--evidence-parts", "complexity,exemplar_distance,exemplar_shape"]
    assert kept_parts(ModelCard(anomaly={"scores": {"evidence": {"parts": {}}}})) == []
    assert kept_parts(None) == []
