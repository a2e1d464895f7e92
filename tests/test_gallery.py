"""A model's gallery examples (``inpaint_app.gallery``): written as a whole, read back with what
each shows and its mask preset, and tolerant of a damaged index; the shipped models' examples
are their own validation images (issue 20)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inpaint_app.bundle import load_bundle
from inpaint_app.data import load_labels, load_split
from inpaint_app.gallery import INDEX_FILE, Example, read_examples, write_examples

TRAINED = Path(__file__).resolve().parents[1] / "trained"


def _pixels(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path))).unsqueeze(0)


def _images(n: int) -> torch.Tensor:
    return torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 6, 6).mul(40)


def test_examples_round_trip_with_their_descriptions(tmp_path: Path) -> None:
    folder = tmp_path / "examples"
    written = write_examples(folder, _images(3), shows=["a dot", None, "a line"],
                             masks=["bottom", None, "center"], sources=["a", "b", None])
    assert written == [Example(folder / "val-00.png", "a dot", "bottom", "a"),
                       Example(folder / "val-01.png", None, None, "b"),
                       Example(folder / "val-02.png", "a line", "center", None)]
    assert torch.equal(_pixels(folder / "val-02.png"), _images(3)[2])


def test_writing_replaces_the_whole_set(tmp_path: Path) -> None:
    folder = tmp_path / "examples"
    write_examples(folder, _images(4), [None] * 4, [None] * 4, [None] * 4)
    write_examples(folder, _images(2), ["x", "y"], [None] * 2, [None] * 2)
    assert sorted(p.name for p in folder.iterdir()) == [INDEX_FILE, "val-00.png", "val-01.png"]
    assert not list(tmp_path.glob("examples.*")), "no staging folder is left behind"


def test_bad_input_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    folder = tmp_path / "examples"
    with pytest.raises(ValueError, match="unknown mask presets"):
        write_examples(folder, _images(1), [None], ["sideways"], [None])
    with pytest.raises(ValueError, match="one description"):
        write_examples(folder, _images(2), [None], [None], [None])
    with pytest.raises(ValueError, match="expected uint8 images"):
        write_examples(folder, _images(1).float(), [None], [None], [None])
    assert not list(tmp_path.iterdir()), "nothing written, no staging folder left"


def test_names_keep_their_order_past_99_and_a_stopped_swap_keeps_the_old_set(
        tmp_path: Path) -> None:
    folder = tmp_path / "examples"
    written = write_examples(folder, _images(101), [None] * 101, [None] * 101, [None] * 101)
    assert [e.path.name for e in written][-2:] == ["val-099.png", "val-100.png"]
    folder.rename(tmp_path / "examples.old")  # as if stopped between the two renames
    assert len(read_examples(folder)) == 101


def test_a_damaged_index_leaves_the_images_as_examples(tmp_path: Path) -> None:
    folder = tmp_path / "examples"
    write_examples(folder, _images(2), ["a", "b"], ["top", "top"], [None, None])
    (folder / INDEX_FILE).write_text("{not json")
    assert [e.shows for e in read_examples(folder)] == [None, None]
    (folder / INDEX_FILE).write_text(json.dumps({"val-00.png": {"mask": "sideways",
                                                                "shows": 7}}))
    assert read_examples(folder)[0] == Example(folder / "val-00.png")  # unusable fields dropped
    assert read_examples(tmp_path / "absent") == []


@pytest.mark.data
@pytest.mark.parametrize("model", ["mnist-glow", "fashion-mnist-glow"])
def test_shipped_examples_are_the_models_own_validation_images(model: str,
                                                               data_root: Path) -> None:
    """Issue 20: "examples come from each model's own validation images", and each says
    truly what it shows (its label)."""
    bundle = load_bundle(TRAINED / model)
    dataset = bundle.dataset
    val, labels = load_split(dataset, "val", data_root), load_labels(dataset, "val", data_root)
    from pipelines.exemplars import CLASS_WORDS

    assert len(bundle.examples) == 6
    for example in bundle.examples:
        index = int(example.source.rsplit(" ", 1)[1].replace(",", ""))
        assert torch.equal(_pixels(example.path), val[index])
        assert example.shows == CLASS_WORDS[dataset][int(labels[index])]
        assert example.mask is not None


def test_the_gallery_takes_the_first_image_of_each_class(tmp_path: Path) -> None:
    from pipelines.exemplars import EXAMPLE_MASKS, write_dataset_examples

    labels = torch.tensor([3, 3, 1, 7, 1, 0, 9])
    written = write_dataset_examples(tmp_path / "examples", _images(7), labels, "mnist", 5)
    assert [e.shows for e in written] == ["a handwritten 3", "a handwritten 1",
                                          "a handwritten 7", "a handwritten 0",
                                          "a handwritten 9"]
    assert [e.source for e in written] == [f"MNIST validation image {i}" for i in (0, 2, 3, 5, 6)]
    assert [e.mask for e in written] == list(EXAMPLE_MASKS[:5])
    assert written[0].path.name == "mnist-val-00.png"
    unlabelled = write_dataset_examples(tmp_path / "other", _images(7), None, "folder:mine", 3)
    assert [e.source for e in unlabelled] == [f"folder:mine validation image {i}"
                                              for i in (0, 2, 4)]
    assert all(e.shows is None for e in unlabelled)
