"""int8 copies of an exported model: agreement with float32, metadata, and the choice."""

from __future__ import annotations

import argparse
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from tests.test_onnx import tiny_exported  # noqa: E402
from voiceprint.embedder import OnnxEmbedder, load_embedder  # noqa: E402
from voiceprint.onnx_metadata import read_onnx_metadata  # noqa: E402
from voiceprint.quantize import (  # noqa: E402
    choose_precision,
    int8_path,
    int8_pays_off,
    quantize_model,
)
from voiceprint.runners import OnnxRunner  # noqa: E402
from voiceprint.scoring import verification  # noqa: E402
from voiceprint.synth import make_voice, synthesize_utterance  # noqa: E402

# Cosine between an int8 embedding and the float32 one of the same clip, at least: the
# tiny random model is far harder on quantization than a trained one (0.9999 measured).
MIN_COSINE = 0.98


def _clips(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [synthesize_utterance(make_voice(rng), 2.0, rng, 16000) for _ in range(count)]


@pytest.fixture(scope="module")
def quantized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("int8")
    model = shutil.copy(tiny_exported()[1], folder / "tiny.onnx")
    return Path(model), quantize_model(model, int8_path(model), _clips(12, seed=1))


def test_int8_embeddings_agree_with_float32(quantized: tuple[Path, Path]) -> None:
    fp32, int8 = (OnnxEmbedder(p) for p in quantized)
    held_out = _clips(6, seed=2)  # not the calibration clips
    a, b = fp32.embed_batch(held_out), int8.embed_batch(held_out)
    cosine = verification(a, b)
    assert cosine.min() >= MIN_COSINE
    assert not np.array_equal(a, b)  # it is another computation
    if not int8_pays_off():
        return  # u8s8 without VNNI can saturate (16-bit pair sums): auto keeps float32 there
    # the two models tell speakers apart the same way
    assert (
        np.argsort(a @ a.T, axis=1)[:, -2].tolist() == np.argsort(b @ b.T, axis=1)[:, -2].tolist()
    )


def test_int8_copy_keeps_the_metadata(quantized: tuple[Path, Path]) -> None:
    fp32, int8 = (OnnxEmbedder(p) for p in quantized)
    assert (fp32.runner.precision, int8.runner.precision) == ("fp32", "int8")
    assert int8.model_id == fp32.model_id
    assert int8.decision.threshold == pytest.approx(fp32.decision.threshold)
    assert quantized[1].name == "tiny.int8.onnx"


def test_precision_choice(quantized: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    model, copy = quantized
    monkeypatch.delenv("VOICEPRINT_PRECISION", raising=False)
    assert choose_precision(model, "fp32") == model
    assert choose_precision(model, "int8") == copy
    monkeypatch.setattr("voiceprint.quantize.int8_pays_off", lambda: True)
    assert choose_precision(model, "auto") == copy
    assert load_embedder(model).runner.precision == "int8"
    monkeypatch.setenv("VOICEPRINT_PRECISION", "fp32")  # the exact path on demand
    assert choose_precision(model, "auto") == model
    monkeypatch.setattr("voiceprint.quantize.int8_pays_off", lambda: False)
    monkeypatch.delenv("VOICEPRINT_PRECISION")
    assert choose_precision(model, "auto") == model
    with pytest.raises(ValueError, match="precision"):
        choose_precision(model, "fp16")
    lone = model.with_name("lone.onnx")
    shutil.copy(model, lone)
    with pytest.raises(FileNotFoundError, match="int8"):
        choose_precision(lone, "int8")
    assert choose_precision(lone, "auto") == lone


def _relabelled(source: Path, out: Path, **changes: str) -> Path:
    """A copy of ``source`` whose ``voiceprint.<key>`` metadata entries are ``changes``."""
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(source))
    props = {p.key: p.value for p in proto.metadata_props}
    props.update({f"voiceprint.{k}": v for k, v in changes.items()})
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, props)
    onnx.save_model(proto, str(out))
    return out


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"model_id": "another-model"}, "model_id another-model"),
        ({"backend": '{"mean": null}'}, "backend differs"),  # recalibrated after quantizing
    ],
)
def test_a_foreign_int8_sibling_is_passed_over(
    quantized: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    changes: dict[str, str],
    reason: str,
) -> None:
    model = Path(shutil.copy(quantized[0], tmp_path / "model.onnx"))
    foreign = _relabelled(quantized[1], int8_path(model), **changes)
    monkeypatch.delenv("VOICEPRINT_PRECISION", raising=False)
    monkeypatch.setattr("voiceprint.quantize.int8_pays_off", lambda: True)  # as on VNNI
    with caplog.at_level(logging.WARNING, logger="voiceprint.quantize"):
        embedder = load_embedder(model)
    assert (embedder.runner.path, embedder.runner.precision) == (model, "fp32")
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and foreign.name in warned[0] and reason in warned[0]
    with pytest.raises(ValueError, match=f"not an int8 copy of .*{reason}"):
        choose_precision(model, "int8")  # asked for by name: refused, not swapped
    # the genuine copy beside the same model still runs
    shutil.copy(quantized[1], foreign)
    assert load_embedder(model).runner.precision == "int8"


def test_metadata_is_read_without_loading_the_graph(
    quantized: tuple[Path, Path], tmp_path: Path
) -> None:
    for path in quantized:
        assert read_onnx_metadata(path) == OnnxRunner(path).metadata
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"RIFF not a model at all")
    with pytest.raises(ValueError, match="junk.onnx is not a well-formed ONNX model"):
        read_onnx_metadata(junk)


def test_missing_copy_names_a_real_export_option(tmp_path: Path) -> None:
    from voiceprint.cli import build_parser

    with pytest.raises(FileNotFoundError) as caught:
        choose_precision(tmp_path / "model.onnx", "int8")
    named = set(re.findall(r"--[a-z0-9][a-z0-9-]*", str(caught.value)))
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    options = {o for action in sub.choices["export"]._actions for o in action.option_strings}
    assert named and named <= options, f"{sorted(named - options)} is not an export option"


def test_vnni_flag_detection(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor : 0\nflags : fpu sse avx2 avx512f avx512_vnni\n")
    assert int8_pays_off(info)
    info.write_text("processor : 0\nflags : fpu sse avx2\n")
    assert not int8_pays_off(info)
    assert not int8_pays_off(tmp_path / "missing")


def test_quantize_needs_calibration_clips(quantized: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="calibration"):
        quantize_model(quantized[0], tmp_path / "x.onnx", [])
