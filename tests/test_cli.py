"""The ``flowpaint`` command and the package metadata behind it."""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.cli import COMMANDS, LAB_COMMANDS, main


def test_every_subcommand_is_a_module_with_main_taking_argv() -> None:
    for name, (module, _) in COMMANDS.items():
        entry = importlib.import_module(module).main
        assert list(inspect.signature(entry).parameters) == ["argv"], name


def test_help_lists_commands_and_unknown_ones_fail(capsys) -> None:
    assert main([]) == 0
    listed = capsys.readouterr().out
    assert all(f"  {name} " in listed for name in COMMANDS)
    assert main(["trian"]) == 2
    assert "unknown command 'trian'" in capsys.readouterr().err


def test_lab_tooling_is_no_subcommand_and_says_where_it_went(capsys) -> None:
    assert main(["gpu-run", "--help"]) == 2
    assert "python -m benchmarks.gpu_run" in capsys.readouterr().err
    for name, module in LAB_COMMANDS.items():
        assert name not in COMMANDS
        assert list(inspect.signature(importlib.import_module(module).main).parameters) == [
            "argv"], module


def test_subcommand_hands_its_arguments_to_the_pipeline(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["calibrate", "--help"])
    assert exit_.value.code == 0
    usage = capsys.readouterr().out
    assert usage.startswith("usage: flowpaint calibrate") and "--fpr" in usage
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--port", "not-a-port"])
    assert exit_.value.code == 2


def test_installed_package_declares_the_console_script_and_runs_from_any_folder(tmp_path
                                                                               ) -> None:
    try:
        dist = importlib.metadata.distribution("flowpaint")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("flowpaint is not installed (make install: pip install -e .[test])")
    scripts = {e.name: e.value for e in dist.entry_points if e.group == "console_scripts"}
    assert scripts == {"flowpaint": "pipelines.cli:main"}
    requires = " ".join(dist.requires or [])
    for package in ("torch", "gradio", "scikit-image", "numpy", "scipy", "pandas", "pillow"):
        assert package in requires
    assert "gradio<7,>=6.31" in dist.requires  # the code needs Gradio 6 keywords
    code = "import inpaint_app; print(inpaint_app.__file__)"
    found = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                           text=True, timeout=60)
    assert found.returncode == 0, found.stderr
    package = Path(__file__).resolve().parents[1] / "inpaint_app"
    assert Path(found.stdout.strip()).parent == package


def test_version_prints_the_installed_metadata_version(capsys) -> None:
    try:
        expected = importlib.metadata.version("flowpaint")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("flowpaint is not installed (make install: pip install -e .[test])")
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"flowpaint {expected}"
