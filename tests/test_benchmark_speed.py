"""The speed benchmark's plumbing (benchmarks/speed.py): timing, agreement, ratios, report.

No model, corpus, reference package or service is needed.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from benchmarks import speed


def _row(name: str, wall: float, cpu: float, kind: str = "voiceprint") -> speed.RtfRow:
    return speed.RtfRow(name, kind, wall, wall, cpu, 1, "")


def test_time_systems_rtf_and_agreement() -> None:
    waves = [np.zeros(16000, dtype=np.float32)] * 3
    base = np.array([1.0, 0.0])
    systems = [
        speed.System("voiceprint onnxruntime fp32", "voiceprint", lambda w: base),
        speed.System(
            "voiceprint onnxruntime int8",
            "voiceprint",
            lambda w: np.array([1.0, 1.0]),
            reference="voiceprint onnxruntime fp32",
        ),
        speed.System("ref", "reference", lambda w: base),
    ]
    rows = speed.time_systems(systems, waves, rounds=2)
    assert [r.system for r in rows] == [s.name for s in systems]
    for r in rows:
        assert r.rounds == 2 and 0 <= r.wall_rtf_best <= r.wall_rtf and r.cpu_rtf >= 0
    assert rows[0].agreement is None and rows[2].agreement is None
    np.testing.assert_allclose(rows[1].agreement["min_cosine"], 1 / np.sqrt(2))


def test_ratios_against_targets() -> None:
    rtf = [
        _row("voiceprint onnxruntime fp32", 0.003, 0.006),
        _row("voiceprint onnxruntime int8", 0.002, 0.004),
        _row("SpeechBrain 1.1.2 ECAPA C=256", 0.005, 0.010, "reference"),
    ]
    eer = [
        {"system": "voiceprint onnxruntime fp32", "eer": 0.0500},
        {"system": "voiceprint onnxruntime int8", "eer": 0.0505},
    ]
    cli = [{"wall_median": 0.8}, {"wall_median": 1.6}]
    service = [
        {"batching": b, "clients": c, "rps": r}
        for b, c, r in (("on", 1, 15.0), ("on", 16, 40.0), ("off", 16, 25.0))
    ]
    lines = {line.split(" | ")[0][2:]: line for line in speed.ratios(rtf, eer, cli, service)}
    assert lines["onnxruntime fp32: wall RTF"].endswith("| NO |")
    assert lines["onnxruntime int8: wall RTF"].endswith("| yes |")
    assert "| 0.4 | <= 0.5 | yes |" in lines["onnxruntime int8 / SpeechBrain, wall RTF"]
    assert "| 0.6 | <= 0.5 | NO |" in lines["onnxruntime fp32 / SpeechBrain, wall RTF"]
    assert "| 1.5 |" in lines["int8 speed-up over fp32, wall RTF"]
    assert "| 0.05 | <= 0.1 | yes |" in lines["dev EER int8 - fp32 (onnxruntime), points"]
    assert lines["voiceprint compare, median wall s"].endswith("| yes |")
    assert "| 1.6 | >= 2 | NO |" in lines["service 16 clients: batching on / off"]
    assert "| 2.12 | >= 2 | yes |" in lines["service 16 clients / recorded 50 clients (18.9 req/s)"]


def test_autocast_wrapper_keeps_the_model_contract() -> None:
    class Tiny(torch.nn.Module):
        embedding_dim = 3
        min_frames = 2

        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(4, 3)

        def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None):
            return self.linear(feats.mean(1))

    model = Tiny()
    wrapped = speed._Autocast(model)
    feats = torch.randn(2, 5, 4)
    out = wrapped(feats)
    assert out.dtype == torch.float32 and wrapped.embedding_dim == 3 and wrapped.min_frames == 2
    torch.testing.assert_close(out, model(feats), atol=0.05, rtol=0.05)


def test_precision_env_restores() -> None:
    before = os.environ.get("VOICEPRINT_PRECISION")
    with speed.precision_env("fp32"):
        assert os.environ["VOICEPRINT_PRECISION"] == "fp32"
        with speed.precision_env(None):
            assert "VOICEPRINT_PRECISION" not in os.environ
        assert os.environ["VOICEPRINT_PRECISION"] == "fp32"
    assert os.environ.get("VOICEPRINT_PRECISION") == before
