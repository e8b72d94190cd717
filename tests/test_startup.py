"""The ONNX path (load, speech check, embed, score, the CLI's compare) never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voiceprint.synth import make_voice, synthesize_utterance

pytest.importorskip("onnxruntime")
DEFAULT_MODEL = Path(__file__).parents[1] / "src" / "voiceprint" / "assets" / "default.onnx"

PROBE = """
import json, sys
from voiceprint.cli import main
code = main(["compare", "--model", sys.argv[1], sys.argv[2], sys.argv[3]])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "sklearn", "matplotlib"})
print(json.dumps({"code": code, "heavy": heavy}))
"""


def test_compare_with_an_onnx_model_imports_no_torch(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    paths = []
    for i in range(2):
        wave = synthesize_utterance(make_voice(rng), 3.0, rng, 16000)
        paths.append(tmp_path / f"clip{i}.wav")
        sf.write(paths[-1], wave, 16000)
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(DEFAULT_MODEL), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = out.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["code"] in (0, 1), out.stderr  # accept or reject, never an error
    assert "score" in lines[0] and "llr" in lines[0]
    assert result["heavy"] == [], f"the ONNX path imported {result['heavy'][:5]}"
