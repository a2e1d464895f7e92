"""benchmarks.time_to_quality: the ratio, the command line, and a 20-second end-to-end run."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

import benchmarks.time_to_quality as ttq


def _curve(points: list[tuple[float, float]]) -> list[dict]:
    return [{"seconds": s, "val_bpd": v} for s, v in points]


def test_ratio_is_ours_first_time_at_the_peers_final_over_the_peers_budget() -> None:
    ours = _curve([(0, 6.0), (60, 3.0), (120, 2.1), (180, 2.0), (240, 1.9)])
    peer = _curve([(0, 6.5), (900, 2.5), (1800, 2.0)])
    result = ttq.time_to_quality(ours, peer, peer_budget=1800)
    assert result["target_val_bpd"] == 2.0
    assert result["ours_seconds"] == 180  # "at or below": equal counts
    assert result["ratio"] == pytest.approx(0.1)
    assert result["met"] is True
    late = ttq.time_to_quality(_curve([(0, 6.0), (1000, 2.0)]), peer, peer_budget=1800)
    assert late["ratio"] == pytest.approx(1000 / 1800, abs=1e-4) and late["met"] is False
    never = ttq.time_to_quality(_curve([(0, 6.0), (1800, 2.01)]), peer, peer_budget=1800)
    assert never["ours_seconds"] is None and never["ratio"] is None and never["met"] is False
    # A curve that rises again: the first crossing counts, not the last point.
    assert ttq.first_time_at_or_below(_curve([(0, 5), (10, 1.5), (20, 2.5)]), 2.0) == 10


@pytest.mark.parametrize("argv, message", [
    (["--minutes", "0"], "--minutes must be > 0"),
    (["--val-every", "-1"], "--val-every must be > 0"),
    (["--threads", "0"], "--threads must be >= 1"),
    (["--val-images", "0"], "--val-images must be >= 1"),
    (["--limit-train", "100"], "at least one batch of either side (128)"),
    (["--hparams", "{steps: 2}"], "--hparams is not JSON"),
    (["--hparams", '{"depth": 2}'], "keys among ['steps', 'hidden']"),
    (["--hparams", '{"steps": 0}'], "positive integers"),
    (["--config", "no/such.json"], "no such file"),
    (["--dataset", "cifar10"], "invalid choice"),
])
def test_bad_command_lines_fail_with_a_clear_error(argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        ttq.parse(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_without_normflows_it_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setattr(ttq, "import_peer", lambda: None)
    with pytest.raises(SystemExit, match=r'pip install -e "\.\[bench\]"'):
        ttq.main(["--out", "unused"])


@pytest.fixture
def images(monkeypatch) -> str:
    """A few hundred MNIST images when $FLOWPAINT_DATA has them, else random pixels (the
    harness is what is tested, not the numbers)."""
    root = Path(os.environ.get("FLOWPAINT_DATA", "./data"))
    if (root / "MNIST" / "raw").is_dir():
        return "mnist"
    sizes = {"train": 300, "val": 100, "test": 100}
    monkeypatch.setattr(ttq, "load_split", lambda name, split, root: torch.randint(
        0, 256, (sizes[split], 1, 28, 28), dtype=torch.uint8,
        generator=torch.Generator().manual_seed(len(split))))
    return "random pixels (MNIST not under $FLOWPAINT_DATA)"


@pytest.mark.slow
def test_twenty_second_run_end_to_end(tmp_path, images, capsys) -> None:
    pytest.importorskip("normflows", reason='the peer library: pip install -e ".[bench]"')
    report = ttq.main(["--minutes", str(10 / 60), "--threads", "1",
                       "--hparams", '{"steps": 1, "hidden": 8}', "--limit-train", "300",
                       "--val-images", "100", "--test-images", "100", "--val-every", "3",
                       "--out", str(tmp_path)])
    progress = capsys.readouterr().out
    assert "ours:" in progress and "peer:" in progress and "s of training" in progress
    saved = json.loads((tmp_path / "time_to_quality.json").read_text())
    assert saved == json.loads(json.dumps(report))
    assert saved["images"] == {"train": 300, "val": 100, "test": 100}
    assert saved["machine"]["normflows"] and saved["order"] == ["ours", "peer"]
    ours, peer = saved["sides"]["ours"], saved["sides"]["peer"]
    assert ours["parameters"] == peer["parameters"]  # one architecture, two libraries
    assert peer["recipe"]["optimizer"] == "Adamax" and ours["recipe"]["ema"] == 0.999
    for side in (ours, peer):
        assert len(side["curve"]) >= 2 and side["steps"] > 0
        assert all(math.isfinite(p["val_bpd"]) for p in side["curve"])
        assert math.isfinite(side["test_bpd"]) and math.isfinite(side["final_val_bpd"])
        seconds = [p["seconds"] for p in side["curve"]]
        assert seconds == sorted(seconds) and seconds[0] == 0
        assert 10 <= seconds[-1] < 15  # the budget, overshot by at most one step
    assert saved["result"] == ttq.time_to_quality(ours["curve"], peer["curve"],
                                                  saved["budget_seconds"])
    markdown = (tmp_path / "time_to_quality.md").read_text()
    assert "**Ratio**" in markdown and "normflows 1.7.3" in markdown
    assert markdown.count("\n| ") >= 12 + len(ours["curve"])  # recipe rows and the curves
