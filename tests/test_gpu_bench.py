"""The GPU benchmark's dry run on the CPU: every row is measured and written, the DDP row
through torchrun with two gloo ranks (issue 21, part 4: ready for a borrowed GPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import gpu_bench

pytestmark = pytest.mark.slow


def test_dry_run_writes_every_row_with_its_device(tmp_path: Path) -> None:
    report = gpu_bench.main(["--out", str(tmp_path), "--device", "cpu", "--quick",
                             "--no-compile", "--ddp-processes", "2"])
    names = [r["name"] for r in report["rows"]]
    assert len(names) == 4 and "DDP over 2 process(es)" in names[1]
    assert all(r["value"] > 0 for r in report["rows"])
    assert report["device"].startswith("CPU")
    assert json.loads((tmp_path / "gpu_bench.json").read_text())["rows"] == report["rows"]
    assert "| default verdict (evidence, 32 images), eager |" in (
        tmp_path / "gpu_bench.md").read_text()


def test_out_is_required_outside_a_torchrun_rank() -> None:
    with pytest.raises(SystemExit):
        gpu_bench.parse_args(["--device", "cpu"])
