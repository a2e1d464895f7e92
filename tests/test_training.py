"""Training: the train/evaluate command lines end to end, resume, DDP, and their errors."""

from __future__ import annotations

import gc
import json
import math
import os
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from benchmarks import results
from inpaint_app import build_model, load_model, trainer
from inpaint_app.card import ModelCard
from inpaint_app.models import read_card
from inpaint_app.train_state import Process, TrainState
from inpaint_app.training import (
    EMA,
    LogProb,
    NonFiniteGuard,
    initialize_actnorm,
    perturb_pixels,
    train_step,
    warmup_cosine,
)
from pipelines import evaluate, train

TINY_GLOW = ["--dataset", "mnist", "--model", "glow", "--hparams", '{"steps": 2, "hidden": 16}',
             "--device", "cpu", "--threads", "1"]


def train_args(out: Path, data_root: Path, *extra: str) -> list[str]:
    return [*TINY_GLOW, "--out", str(out), "--data-root", str(data_root), *extra]


@pytest.fixture(scope="module")
def trained(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A three-epoch run on 512 MNIST images (a few seconds on one CPU thread)."""
    out = tmp_path_factory.mktemp("mnist-glow")
    train.main(train_args(out, data_root, "--limit-train", "512", "--limit-val", "256",
                          "--epochs", "3", "--batch-size", "32", "--warmup", "10"))
    return out


@pytest.mark.data
def test_short_training_run_lowers_validation_bits_per_dim(trained: Path) -> None:
    for name in ("model.pt", "card.json", "samples.png"):
        assert (trained / name).is_file()
    card = json.loads((trained / "card.json").read_text())
    val = [entry["val_bpd"] for entry in card["history"]]
    assert all(math.isfinite(v) for v in val)
    assert val[-1] < val[0], f"validation bits/dim did not fall: {val}"
    assert card["val_bpd"] == min(val)
    # what the figure covers is recorded in fields, and the hparams rebuild the architecture
    assert (card["val_images"], card["val_subset"]) == (256, "first")
    assert card["hparams"] == {"steps": 2, "hidden": 16}
    from benchmarks.families import model_from_card

    assert model_from_card(read_card(trained)).config == load_model(trained).config
    state = torch.load(trained / "train_state.pt", weights_only=True)
    assert [entry["epoch"] for entry in state["history"]] == [1, 2, 3]
    assert state["step"] == 3 * (512 // 32)


@pytest.mark.data
def test_evaluate_agrees_with_the_training_card(trained: Path, data_root: Path,
                                                tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    evaluate.main([str(trained / "model.pt"), "--split", "val", "--limit", "256", "--first",
                   "--json", str(out), "--data-root", str(data_root), "--device", "cpu"])
    result = json.loads(out.read_text())
    card = json.loads((trained / "card.json").read_text())
    assert result["images"] == 256 and result["dataset"] == "mnist"
    # Same weights, images and dequantization seed as training's validation: the same number.
    assert result["bpd"] == pytest.approx(card["val_bpd"], abs=2e-4)


@pytest.mark.data
def test_evaluate_writes_json_on_the_test_split(trained: Path, data_root: Path,
                                                tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    evaluate.main([str(trained), "--limit", "64", "--json", str(out),
                   "--data-root", str(data_root), "--device", "cpu"])
    result = json.loads(out.read_text())
    assert result["split"] == "test" and result["images"] == 64
    assert math.isfinite(result["bpd"])
    assert result["bpd_stderr"] >= 0


@pytest.mark.data
def test_evaluate_update_card_records_the_full_split(trained: Path, data_root: Path,
                                                     tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    out = tmp_path / "eval.json"
    evaluate.main([str(copy), "--split", "val", "--json", str(out), "--update-card",
                   "--data-root", str(data_root), "--device", "cpu"])
    result = json.loads(out.read_text())
    card = json.loads((copy / "card.json").read_text())
    assert card["val_bpd"] == result["bpd"] and "val_measured" in card
    assert (card["val_images"], card["val_subset"]) == (result["images"], "all")
    assert card["val_bpd_stderr"] == result["bpd_stderr"]
    assert card["val_command"].startswith("python -m pipelines.evaluate")
    assert card["val_images"] == 5000 and "all 5,000" in card["val_measured"]
    measured = read_card(copy / "model.pt").val
    assert (measured.bpd, measured.images, measured.subset) == (result["bpd"], 5000, "all")
    with pytest.raises(SystemExit, match="full-split"):
        evaluate.main([str(copy), "--limit", "8", "--update-card", "--data-root", str(data_root)])
    with pytest.raises(SystemExit, match="val or test"):
        evaluate.main([str(copy), "--split", "train", "--update-card",
                       "--data-root", str(data_root)])


@pytest.mark.data
def test_resume_continues_where_the_run_stopped(data_root: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    args = train_args(tmp_path, data_root, "--limit-train", "256", "--limit-val", "64",
                      "--batch-size", "32", "--warmup", "2", "--checkpoint-every", "3")
    steps_per_epoch = 256 // 32
    train.main([*args, "--epochs", "1"])
    first = torch.load(tmp_path / "train_state.pt", weights_only=True)
    assert first["step"] == steps_per_epoch and len(first["history"]) == 1
    capsys.readouterr()

    train.main([*args, "--epochs", "2", "--resume"])
    printed = capsys.readouterr().out
    state = torch.load(tmp_path / "train_state.pt", weights_only=True)
    assert "resumed from" in printed
    assert "epoch 1:" not in printed and "epoch 2:" in printed  # epoch 1 was not trained again
    assert [entry["epoch"] for entry in state["history"]] == [1, 2]
    assert [entry["step"] for entry in state["history"]] == [steps_per_epoch, 2 * steps_per_epoch]
    assert state["step"] == 2 * steps_per_epoch
    assert state["history"][0] == first["history"][0]


@pytest.mark.parametrize("keep", ["best", "last"])
def test_keep_last_installs_weights_that_validate_worse(tmp_path: Path, keep: str) -> None:
    args = train.parse_args([*TINY_GLOW, "--out", str(tmp_path), "--keep", keep])
    args.init_source = None
    density = build_model("glow", image_shape=(1, 28, 28), steps=2, hidden=16)
    proc = Process(0, 1, torch.device("cpu"))
    state = TrainState.start(args, density, 1, proc)
    state.step, state.best_val, state.elapsed = 1, -math.inf, 1.0
    val = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8)
    trainer.validate(args, state, val, 0, [1.0], proc)
    assert state.best_val == -math.inf  # a worse validation never becomes the best
    assert (tmp_path / "model.pt").is_file() == (keep == "last")
    if keep == "last":
        card = json.loads((tmp_path / "card.json").read_text())
        assert card["kept"] == "the last validated weights"
        assert card["val_bpd"] == card["history"][-1]["val_bpd"]


def test_falling_back_leaves_the_snapshot_intact_for_the_next_fall_back() -> None:
    """A review note: after ``fall_back`` the optimizer's moments were the snapshot's own
    tensors, so the next steps rewrote the snapshot in place."""
    args = train.parse_args([*TINY_GLOW, "--out", "unused"])
    density = build_model("glow", image_shape=(1, 8, 8), steps=2, hidden=8)
    state = TrainState.start(args, density, 4, Process(0, 1, torch.device("cpu")))
    batch = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(0))
    train_step(LogProb(density), density, batch, state.optimizer)
    state.remember_good()
    snapshot = {k: v.clone() for k, v in state.last_good["optimizer"]["state"][0].items()}
    state.fall_back()
    train_step(LogProb(density), density, batch, state.optimizer)
    kept = state.last_good["optimizer"]["state"][0]
    assert all(torch.equal(kept[k], v) for k, v in snapshot.items())
    assert not torch.equal(state.optimizer.state_dict()["state"][0]["exp_avg"],
                           kept["exp_avg"]), "the step moved the live moments"


def test_train_state_resumes_from_its_file_and_a_failed_write_only_warns(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """train_state.pt keeps the keys of running jobs' files, and resuming from it restores
    weights, EMA, optimizer, schedule, random stream and counters; a write that fails (here
    the folder is a file) warns and leaves the previous file."""
    args = train.parse_args([*TINY_GLOW, "--out", str(tmp_path), "--ema", "0.9", "--epochs", "2"])
    proc = Process(0, 1, torch.device("cpu"))
    density = build_model("glow", image_shape=(1, 8, 8), steps=2, hidden=8)
    state = TrainState.start(args, density, 4, proc)
    batch = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(0))
    loss = train_step(LogProb(density), density, batch, state.optimizer, generator=state.generator)
    state.scheduler.step()
    state.ema.update(density)
    state.step, state.best_val, state.history, state.elapsed = 1, 5.0, [{"epoch": 1}], 12.5
    state.step_losses, state.lr_scale = [loss], 0.5
    path = tmp_path / "train_state.pt"
    state.save(path)
    assert set(torch.load(path, weights_only=True)) == {
        "model", "optimizer", "scheduler", "generator", "step", "best_val", "history",
        "elapsed", "ema", "losses", "lr_scale"}

    other = build_model("glow", image_shape=(1, 8, 8), steps=2, hidden=8)
    back = TrainState.resume(path, args, other, 4, proc)
    assert (back.step, back.best_val, back.history, back.elapsed, back.step_losses,
            back.lr_scale) == (1, 5.0, [{"epoch": 1}], 12.5, [loss], 0.5)
    saved_tensors = [*density.state_dict().values(), *state.ema.state_dict().values(),
                     *(t for s in state.optimizer.state_dict()["state"].values()
                       for t in s.values()), state.generator.get_state()]
    back_tensors = [*other.state_dict().values(), *back.ema.state_dict().values(),
                    *(t for s in back.optimizer.state_dict()["state"].values()
                      for t in s.values()), back.generator.get_state()]
    assert all(torch.equal(a, b) for a, b in zip(saved_tensors, back_tensors, strict=True))
    assert back.scheduler.get_last_lr() == state.scheduler.get_last_lr()
    assert back.scheduler.lr_lambdas[0](1) == pytest.approx(  # the schedule reads lr_scale
        0.5 * warmup_cosine(1, warmup=args.warmup, total=8))

    state.step = 2
    state.save(path / "unwritable")
    assert "warning: could not write" in capsys.readouterr().err
    assert torch.load(path, weights_only=True)["step"] == 1


def test_a_second_warm_restart_keeps_the_whole_training_history() -> None:
    """A restart of a restart records both sources, and the results table adds every budget."""
    first = {"val_bpd": 1.42, "training_minutes": 125.0, "command": "train A"}
    second = trainer.init_from_summary("runs/a/model.pt", {"card": first})
    source_card = {"val_bpd": 1.31, "training_minutes": 135.0, "command": "train B",
                   "init_from": second}
    third = trainer.init_from_summary("runs/b/model.pt", {"card": source_card})
    assert third["init_from"]["checkpoint"] == "runs/a/model.pt"
    assert third["init_from"]["val_bpd"] == 1.42
    card = ModelCard(training_minutes=110.0, init_from=third)
    assert results.training_minutes(card) == "125.0 + 135.0 + 110.0"
    assert results.training_minutes(ModelCard.from_dict(card.to_dict())) == \
        "125.0 + 135.0 + 110.0"  # the chain survives card.json
    assert results.training_minutes(ModelCard(training_minutes=9.5)) == "9.5"
    assert results.training_minutes(ModelCard(training_minutes=0.0)) == "0.0"  # not unknown
    assert results.training_minutes(ModelCard()) == "?"


@pytest.mark.data
def test_init_from_warm_restarts_from_a_checkpoint(trained: Path, data_root: Path,
                                                   tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """--init-from starts from the source's weights (no ActNorm re-initialisation, so the first
    validation is close to the source's), records the source in the card, takes the source's
    architecture whatever --hparams says (same-shaped weights of another coupling would load
    silently), and refuses a checkpoint of another family."""
    source = json.loads((trained / "card.json").read_text())
    args = train_args(tmp_path / "warm", data_root, "--limit-train", "64", "--limit-val", "256",
                      "--epochs", "1", "--batch-size", "32", "--warmup", "50", "--lr", "1e-5",
                      "--init-from", str(trained / "model.pt"))
    train.main(args)
    assert "initialised from" in capsys.readouterr().out
    card = json.loads((tmp_path / "warm" / "card.json").read_text())
    assert card["init_from"]["val_bpd"] == source["val_bpd"]
    assert abs(card["val_bpd"] - source["val_bpd"]) < 0.05
    source_config = torch.load(trained / "model.pt", weights_only=True)["config"]
    recoupled = [a if a != '{"steps": 2, "hidden": 16}' else
                 '{"steps": 2, "hidden": 16, "scale": "tanh", "shift_bound": null}' for a in args]
    recoupled[recoupled.index("--out") + 1] = str(tmp_path / "recoupled")
    train.main(recoupled)
    warm_config = torch.load(tmp_path / "recoupled" / "model.pt", weights_only=True)["config"]
    assert warm_config == source_config
    other_family = [a if a != "glow" else "realnvp" for a in args]
    other_family[other_family.index("--out") + 1] = str(tmp_path / "other")
    with pytest.raises(SystemExit, match="--init-from"):
        train.main(other_family)


@pytest.mark.parametrize("config", sorted((Path(__file__).resolve().parents[1]
                                           / "pipelines" / "configs").glob("*.json")),
                         ids=lambda p: p.stem)
def test_every_recipe_parses_and_fits_the_checkpoint_limit(config: Path) -> None:
    """The CPU and GPU recipes make shippable models (<= 25 MB); the NICE paper's 5 x 1000 MLPs
    (about 76 MB) are a reproduction, not a shipped model, so they only have to parse."""
    args = train.parse_args(["--config", str(config)])
    if not config.stem.endswith(("-cpu", "-gpu")):
        return
    model = build_model(args.model, image_shape=(1, 28, 28) if "mnist" in args.dataset
                        else (3, 32, 32), **json.loads(args.hparams))
    megabytes = sum(p.numel() for p in model.parameters()) * 4 / 1e6
    assert megabytes < 25, f"{config.name}: {megabytes:.1f} MB of float32 weights"


def test_perturb_pixels_replaces_the_requested_fraction_with_uniform_levels() -> None:
    batch = torch.full((64, 1, 28, 28), 7, dtype=torch.uint8)
    assert torch.equal(perturb_pixels(batch, 0.0), batch)
    out = perturb_pixels(batch, 0.25, torch.Generator().manual_seed(0))
    assert out.dtype == torch.uint8 and batch.eq(7).all()  # a copy; the input is untouched
    changed = out.ne(7).float().mean().item()
    assert changed == pytest.approx(0.25 * 255 / 256, abs=0.005)  # a draw of 7 looks unchanged
    levels = perturb_pixels(batch, 0.999, torch.Generator().manual_seed(1)).flatten()
    assert levels.float().mean().item() == pytest.approx(127.5, abs=1.5)
    again = perturb_pixels(batch, 0.25, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


@pytest.mark.data
def test_train_perturb_makes_a_background_model(data_root: Path, tmp_path: Path) -> None:
    train.main(train_args(tmp_path, data_root, "--perturb", "0.2", "--limit-train", "128",
                          "--limit-val", "64", "--epochs", "1", "--batch-size", "32"))
    card = json.loads((tmp_path / "card.json").read_text())
    assert card["perturb"] == 0.2 and "--perturb 0.2" in card["command"]
    with pytest.raises(SystemExit):
        train.parse_args(["--perturb", "1.0"])


@pytest.mark.data
def test_train_capture_adds_normalized_captured_copies(data_root: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    train.main(train_args(tmp_path, data_root, "--capture", "1", "--limit-train", "64",
                          "--limit-val", "32", "--epochs", "1", "--batch-size", "32"))
    assert "training on 128 images: 1 captured copy of each" in capsys.readouterr().out
    card = json.loads((tmp_path / "card.json").read_text())
    assert card["capture"] == 1 and "--capture 1" in card["command"]
    with pytest.raises(SystemExit):
        train.parse_args(["--capture", "-1"])


def test_captured_copies_are_seeded_normalized_and_differ_from_the_originals() -> None:
    from inpaint_app.normalize import normalize_images
    from inpaint_app.nuisances import captured_copies

    images = torch.zeros(6, 1, 28, 28, dtype=torch.uint8)
    images[:, :, 6:22, 12:16] = 255  # a bar, MNIST-framed
    copies = captured_copies(images, "mnist", 2, seed=3)
    assert copies.shape == (12, 1, 28, 28) and copies.dtype == torch.uint8
    assert torch.equal(copies, captured_copies(images, "mnist", 2, seed=3))
    assert (copies != normalize_images(images, "mnist").repeat(2, 1, 1, 1)).any()
    assert copies[:, :, :3].max() < 40  # the page stays dark at the top (JPEG ringing aside)


def test_train_without_the_dataset_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        train.main(train_args(tmp_path / "out", tmp_path, "--epochs", "1"))
    message = str(info.value.code)
    assert "not found under" in message and "--data-root" in message
    assert not (tmp_path / "out" / "model.pt").exists()


def test_train_rejects_an_unknown_model(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        train.main(["--model", "vae", "--out", str(tmp_path), "--data-root", str(tmp_path)])
    assert info.value.code == 2
    error = capsys.readouterr().err
    assert "vae" in error and all(name in error for name in ("glow", "nice", "realnvp"))


def test_evaluate_reports_a_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        evaluate.main([str(tmp_path / "missing" / "model.pt"), "--device", "cpu"])
    assert "checkpoint not found" in str(info.value.code)


def test_ema_warms_up_then_averages_with_its_full_decay() -> None:
    """Early updates follow the live weights (decay (1 + t) / (10 + t)); late ones use the full
    decay, so the average no longer drags the initialization along for thousands of steps."""
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = EMA(model, decay=0.999)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model, step=0)  # decay 0.1: 90 % of the way at once
    assert ema.state_dict()["weight"].item() == pytest.approx(0.9)
    assert ema.decay_at(0) == pytest.approx(0.1) and ema.decay_at(10_000) == 0.999
    plain = EMA(torch.nn.Linear(1, 1, bias=False), decay=0.999)
    plain.shadow["weight"].zero_()
    plain.update(model)  # no step: the full decay, as before
    assert plain.state_dict()["weight"].item() == pytest.approx(0.001)


def test_resume_with_ema_from_a_state_saved_without_one(tmp_path: Path) -> None:
    """A run started without --ema and resumed with it starts its average from the weights."""
    args = train.parse_args([*TINY_GLOW, "--out", str(tmp_path), "--epochs", "2"])
    proc = Process(0, 1, torch.device("cpu"))
    density = build_model("glow", image_shape=(1, 8, 8), steps=2, hidden=8)
    TrainState.start(args, density, 4, proc).save(tmp_path / "state.pt")
    with_ema = train.parse_args([*TINY_GLOW, "--out", str(tmp_path), "--ema", "0.99"])
    other = build_model("glow", image_shape=(1, 8, 8), steps=2, hidden=8)
    back = TrainState.resume(tmp_path / "state.pt", with_ema, other, 4, proc)
    assert all(torch.equal(a, b) for a, b in zip(back.ema.state_dict().values(),
                                                 density.state_dict().values(), strict=True))


def test_amp_falls_back_to_float32_where_bf16_would_be_emulated(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The folder recipe asks for amp; a CPU without native bf16 trains it in float32."""
    args = train.parse_args(["--images", "imgs", "--out", "o"])
    assert args.amp
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    trainer.settle_amp(args, torch.device("cpu"))
    assert not args.amp and "training in float32" in capsys.readouterr().err
    assert not train.parse_args(["--images", "imgs", "--out", "o", "--no-amp"]).amp


def test_a_configs_recipe_is_what_the_command_line_reads() -> None:
    """``trainer.recipe_from_config`` (time_to_quality's recipe) and ``pipelines.train``'s flags
    share their defaults and read a config alike."""
    config = "pipelines/configs/mnist-glow-cpu.json"
    flags = train.parse_args(["--config", config, "--max-minutes", "0.5", "--seed", "3"])
    recipe = trainer.recipe_from_config(config, max_minutes=0.5, seed=3)
    plain = train.parse_args([])
    for key, default in trainer.RECIPE_DEFAULTS.items():
        assert getattr(plain, key) == default, key
        assert getattr(recipe, key) == getattr(flags, key), key
    assert json.loads(recipe.hparams) == json.loads(flags.hparams)


def test_warmup_cosine_schedule() -> None:
    assert warmup_cosine(0, warmup=4, total=20) == pytest.approx(0.25)
    assert warmup_cosine(3, warmup=4, total=20) == pytest.approx(1.0)
    assert warmup_cosine(20, warmup=4, total=20, floor=0.1) == pytest.approx(0.1)
    decay = [warmup_cosine(s, warmup=4, total=20) for s in range(4, 21)]
    assert all(a >= b for a, b in zip(decay, decay[1:], strict=False))


# DDP: two gloo processes on CPU must hold identical parameters after every step.

def _state_vector(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([t.detach().double().reshape(-1) for t in model.state_dict().values()])


def _ddp_train(rank: int, world: int) -> dict[str, list[torch.Tensor]]:
    """Build differently per rank, wrap in DDP, train on different images; gather the states."""
    torch.manual_seed(1000 + rank)  # each rank builds different weights and permutations
    density = build_model("glow", image_shape=(1, 8, 8), steps=2, hidden=8)
    init_batch = torch.randint(0, 256, (32, 1, 8, 8), dtype=torch.uint8,
                               generator=torch.Generator().manual_seed(0))
    initialize_actnorm(density, init_batch, torch.Generator().manual_seed(0))
    built = _state_vector(density)
    model = torch.nn.parallel.DistributedDataParallel(LogProb(density))  # broadcasts rank 0
    wrapped = _state_vector(density)
    optimizer = torch.optim.Adam(density.parameters(), lr=1e-2)
    data = torch.Generator().manual_seed(rank)  # each rank sees different images
    for _ in range(3):
        batch = torch.randint(0, 256, (8, 1, 8, 8), dtype=torch.uint8, generator=data)
        assert math.isfinite(train_step(model, density, batch, optimizer, generator=data))
    vectors = {}
    for name, vector in (("built", built), ("wrapped", wrapped),
                         ("trained", _state_vector(density))):
        gathered = [torch.empty_like(vector) for _ in range(world)]
        dist.all_gather(gathered, vector)
        vectors[name] = gathered
    return vectors


def _ddp_worker(rank: int, world: int, port: int, result_path: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=60))
    try:
        vectors = _ddp_train(rank, world)
        if rank == 0:
            torch.save(vectors, result_path)
        # Collect the DDP wrapper (it holds the gloo group) and let both ranks finish before the
        # group goes: without this, about 1 run in 13 aborted at interpreter exit (SIGABRT,
        # "terminate called without an active exception") after the work had succeeded.
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_ranks_keep_identical_parameters(tmp_path: Path, free_port) -> None:
    result = tmp_path / "ranks.pt"
    mp.spawn(_ddp_worker, args=(2, free_port(), str(result)), nprocs=2, join=True)
    vectors = torch.load(result, weights_only=True)
    built, wrapped, trained = vectors["built"], vectors["wrapped"], vectors["trained"]
    assert not torch.equal(built[0], built[1])  # the ranks really started apart
    assert torch.equal(wrapped[0], built[0]) and torch.equal(wrapped[1], built[0])
    assert torch.equal(trained[0], trained[1])
    assert not torch.equal(trained[0], wrapped[0])  # and training moved them


@pytest.mark.data
def test_kill_9_then_resume_gives_the_uninterrupted_losses(data_root: Path,
                                                           tmp_path: Path) -> None:
    """A run killed with SIGKILL from outside, mid-training, and resumed reproduces, on CPU,
    every per-step loss of an uninterrupted run with the same seed."""
    import signal
    import subprocess
    import sys
    import time

    args = ["--limit-train", "256", "--limit-val", "64", "--batch-size", "32", "--warmup", "2",
            "--checkpoint-every", "5", "--epochs", "8"]
    root = Path(__file__).resolve().parents[1]

    def command(out: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "pipelines.train", *train_args(out, data_root, *args),
                *extra]

    whole = subprocess.run(command(tmp_path / "whole"), cwd=root, capture_output=True,
                           text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr
    state_path = tmp_path / "crashed" / "train_state.pt"
    crashed = subprocess.Popen(command(tmp_path / "crashed"), cwd=root,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while crashed.poll() is None and time.monotonic() < deadline:
        if state_path.exists() and torch.load(state_path, weights_only=True)["step"] >= 10:
            crashed.send_signal(signal.SIGKILL)  # wherever the run is: mid-step, mid-write
            break
        time.sleep(0.005)
    assert crashed.wait(timeout=60) == -signal.SIGKILL, "the run ended before it was killed"
    left_at = torch.load(state_path, weights_only=True)["step"]
    assert 10 <= left_at < 64
    resumed = subprocess.run(command(tmp_path / "crashed", "--resume"), cwd=root,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    expected = torch.load(tmp_path / "whole" / "train_state.pt", weights_only=True)["losses"]
    got = torch.load(state_path, weights_only=True)["losses"]
    assert len(expected) == 64 and got == expected


def test_non_finite_guard_asks_for_a_restore_after_a_streak() -> None:
    guard = NonFiniteGuard(patience=3)
    verdicts = [guard.observe(x) for x in [1.0, math.nan, math.inf, 2.0, math.nan, math.nan,
                                           math.nan, math.nan]]
    assert verdicts == [False, False, False, False, False, False, True, False]
    assert guard.total == 6


def test_train_step_skips_a_non_finite_loss() -> None:
    density = build_model("glow", image_shape=(1, 8, 8), steps=1, hidden=8)
    optimizer = torch.optim.Adam(density.parameters(), lr=1e-3)
    with torch.no_grad():
        for param in density.parameters():
            param.fill_(math.nan)
        for name, buffer in density.named_buffers():
            if name.endswith("initialized"):
                buffer.fill_(True)  # no data-dependent init to overwrite the NaNs
    before = {k: v.clone() for k, v in density.state_dict().items()}
    loss = train_step(LogProb(density), density, torch.zeros(4, 1, 8, 8, dtype=torch.uint8),
                      optimizer)
    assert math.isnan(loss)
    after = density.state_dict()
    for key, value in before.items():  # nothing moved (NaN compared as equal to NaN)
        assert torch.equal(value.double().nan_to_num(7.0), after[key].double().nan_to_num(7.0))


@pytest.mark.data
def test_a_diverging_run_restores_good_weights_and_lowers_the_rate(
        data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An absurd learning rate makes losses non-finite: the run says so, goes back to its last
    good weights with a halved rate, and still ends with a usable (finite) model."""
    train.main(train_args(tmp_path, data_root, "--limit-train", "256", "--limit-val", "64",
                          "--batch-size", "32", "--warmup", "1", "--epochs", "1", "--lr", "1e4"))
    err = capsys.readouterr().err
    assert "non-finite loss at step" in err
    assert "restored the last good weights, learning rate x0.5" in err
    model = load_model(tmp_path / "model.pt")
    assert torch.isfinite(model.bits_per_dim(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))).all()
