"""The Python API examples of docs/use.md (copied into the README) run as written.

Every ```python block between ``<!-- api-example -->`` and ``<!-- /api-example -->`` is
run in order, in one namespace, in a folder holding the files the examples name:
``model.onnx`` (the tiny exported test model), ``alice1.wav`` ... ``probe.wav`` (two
synthetic voices). Their printed output must not be empty.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from voiceprint.audio import save
from voiceprint.synth import make_voice, synthesize_utterance

from .test_onnx import tiny_exported

DOC = Path(__file__).resolve().parents[1] / "docs" / "use.md"
SECTION = re.compile(r"<!-- api-example -->(.*?)<!-- /api-example -->", re.S)
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def examples() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    return [block for section in SECTION.findall(text) for block in BLOCK.findall(section)]


def test_the_doc_has_examples() -> None:
    blocks = examples()
    assert len(blocks) >= 3
    joined = "\n".join(blocks)
    for name in ("load_embedder", "embed_file", "SpeakerDB", "enroll", "verify", "identify"):
        assert name in joined


def test_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    _, onnx_path = tiny_exported()
    (tmp_path / "model.onnx").write_bytes(onnx_path.read_bytes())
    rng = np.random.default_rng(4)
    alice, bob = make_voice(rng), make_voice(rng)
    for name, voice in (("alice1", alice), ("alice2", alice), ("probe", alice), ("bob1", bob)):
        save(tmp_path / f"{name}.wav", synthesize_utterance(voice, 1.5, rng))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for number, block in enumerate(examples(), 1):
        exec(compile(block, f"docs/use.md example {number}", "exec"), namespace)  # noqa: S102
        assert capsys.readouterr().out.strip(), f"example {number} printed nothing"
    assert (tmp_path / "speakers.db").is_file()
