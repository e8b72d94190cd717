"""The Python API examples of README.md and docs/use.md run as written.

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

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "docs" / "use.md"]
SECTION = re.compile(r"<!-- api-example -->(.*?)<!-- /api-example -->", re.S)
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def examples(doc: Path) -> list[str]:
    text = doc.read_text(encoding="utf-8")
    return [block for section in SECTION.findall(text) for block in BLOCK.findall(section)]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_the_doc_has_examples(doc: Path) -> None:
    blocks = examples(doc)
    assert len(blocks) >= 3
    joined = "\n".join(blocks)
    for name in ("load_embedder", "embed_file", "SpeakerDB", "enroll", "verify", "identify"):
        assert name in joined


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_examples_run(doc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    _, onnx_path = tiny_exported()
    (tmp_path / "model.onnx").write_bytes(onnx_path.read_bytes())
    rng = np.random.default_rng(4)
    alice, bob = make_voice(rng), make_voice(rng)
    for name, voice in (("alice1", alice), ("alice2", alice), ("probe", alice), ("bob1", bob)):
        save(tmp_path / f"{name}.wav", synthesize_utterance(voice, 1.5, rng))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for number, block in enumerate(examples(doc), 1):
        exec(compile(block, f"{doc.name} example {number}", "exec"), namespace)  # noqa: S102
        assert capsys.readouterr().out.strip(), f"example {number} printed nothing"
    assert (tmp_path / "speakers.db").is_file()
