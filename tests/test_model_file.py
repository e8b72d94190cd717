"""The model file: one writer, an inference spec that tolerates what it does not know,
and every older format read by one migration."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from voiceprint.artifact import (
    INFERENCE_KEYS,
    MODEL_FORMAT,
    migrate_model,
    read_model,
    save_train_state,
)
from voiceprint.embedder import Embedder, OnnxEmbedder, load_embedder
from voiceprint.experiment import find_model

from .test_onnx import make_tiny_checkpoint, tiny_exported


def _waves() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (16000, 24000)]


def _embed(embedder: Embedder) -> np.ndarray:
    return embedder.with_policy(check=False).embed_batch(_waves())


def _rewrite(path: Path, out: Path, change) -> Path:
    """A copy of the model file at ``path`` with ``change(payload)`` applied."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    change(payload)
    torch.save(payload, out)
    return out


def test_the_model_file_holds_what_inference_needs_and_nothing_of_training(
    tmp_path: Path,
) -> None:
    path = make_tiny_checkpoint(tmp_path / "model.pth")
    payload = read_model(path)
    assert payload["format"] == MODEL_FORMAT and payload["kind"] == "model"
    assert set(payload["inference"]) == set(INFERENCE_KEYS)
    assert not {"head", "optimizer", "recent", "rng", "speakers"} & set(payload)


def test_an_unknown_inference_key_loads_with_a_warning(tmp_path: Path) -> None:
    """A file of a newer version (one more inference setting, one more front-end field)
    loads here, warns naming what it ignored, and embeds exactly as before."""
    path = make_tiny_checkpoint(tmp_path / "model.pth", seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the file as written loads without any warning
        before = _embed(Embedder.from_checkpoint(path))

    def newer(payload: dict) -> None:
        payload["inference"]["loudness_target_db"] = -23.0
        payload["inference"]["features"]["dither"] = 0.0

    newer_path = _rewrite(path, tmp_path / "newer.pth", newer)
    with pytest.warns(UserWarning, match=r"loudness_target_db.*features\.dither|features\.dither"):
        after = Embedder.from_checkpoint(newer_path)
    np.testing.assert_array_equal(_embed(after), before)
    assert after.model_id == Embedder.from_checkpoint(path).model_id


def test_a_recipe_this_version_cannot_read_still_runs(tmp_path: Path) -> None:
    """Renaming a training key never breaks a shipped model: the recipe is provenance."""
    path = make_tiny_checkpoint(tmp_path / "model.pth", seed=4)

    def renamed(payload: dict) -> None:
        payload["provenance"]["recipe"]["train"]["epochs_renamed"] = 3

    other = _rewrite(path, tmp_path / "renamed.pth", renamed)
    with pytest.warns(UserWarning, match="training recipe does not parse"):
        embedder = Embedder.from_checkpoint(other)
    assert embedder.config is None
    np.testing.assert_array_equal(_embed(embedder), _embed(Embedder.from_checkpoint(path)))


def test_an_unknown_onnx_metadata_key_loads_with_a_warning(tmp_path: Path) -> None:
    import onnx

    _, path = tiny_exported()
    proto = onnx.load(str(path))
    onnx.helper.set_model_props(
        proto,
        {
            **{p.key: p.value for p in proto.metadata_props},
            "voiceprint.loudness_target_db": "-23",
        },
    )
    newer = tmp_path / "newer.onnx"
    onnx.save_model(proto, str(newer))
    with pytest.warns(UserWarning, match="voiceprint.loudness_target_db"):
        embedder = OnnxEmbedder(newer)
    np.testing.assert_allclose(_embed(embedder), _embed(OnnxEmbedder(path)), atol=1e-6)


def test_newer_formats_and_training_states_are_clear_errors(tmp_path: Path) -> None:
    path = make_tiny_checkpoint(tmp_path / "model.pth")
    future = _rewrite(path, tmp_path / "future.pth", lambda p: p.update(format=MODEL_FORMAT + 1))
    with pytest.raises(ValueError, match=r"future\.pth has format 3, newer .*upgrade"):
        read_model(future)
    state = save_train_state(tmp_path / "train_state.pth", {"model": {}, "epoch": 1})
    with pytest.raises(ValueError, match=r"train_state\.pth is a training state, not a model"):
        load_embedder(state)
    broken = _rewrite(path, tmp_path / "broken.pth", lambda p: p["inference"].pop("feat_dim"))
    with pytest.raises(ValueError, match=r"broken\.pth: inference spec lacks feat_dim"):
        read_model(broken)


def test_a_folder_with_a_training_state_only_says_it_was_not_released(tmp_path: Path) -> None:
    save_train_state(tmp_path / "train_state.pth", {"model": {}, "epoch": 1})
    with pytest.raises(FileNotFoundError, match="training was not released"):
        find_model(tmp_path)
    make_tiny_checkpoint(tmp_path / "model.pth")
    assert find_model(tmp_path) == tmp_path / "model.pth"


def test_format_1_migrates_in_one_function() -> None:
    """The fixture from before the split (one *_checkpoint.pth with head, optimizer and
    recipe) reads as a model with its id, weights, back-end and recipe kept."""
    folder = Path(__file__).parent / "fixtures" / "before_quality"
    old = torch.load(folder / "model.pth", map_location="cpu", weights_only=True)
    assert old["format"] == 1 and "config" in old
    migrated = migrate_model(old, "model.pth")
    expected = json.loads((folder / "expected.json").read_text())
    assert migrated["model_id"] == expected["pth"]["model_id"]
    assert migrated["provenance"]["recipe"] == old["config"]
    assert migrated["inference"]["feat_dim"] == old["feat_dim"]
    for name, value in old["model"].items():
        assert torch.equal(migrated["encoder"][name], value)
