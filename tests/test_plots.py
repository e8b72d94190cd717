"""Plots: each writes a PNG and returns its path; bad input raises a clear ValueError."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest

from voiceprint import metrics, plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path: Path) -> bool:
    data = path.read_bytes()
    return len(data) > 1000 and data[:8] == PNG_MAGIC


@pytest.fixture(scope="module")
def scores() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(2.0, 1.0, 300), rng.normal(0.0, 1.0, 3000)


def test_probit_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    p = np.array([1e-4, 0.01, 0.25, 0.5, 0.9, 0.999])
    np.testing.assert_allclose(plots.probit(p), stats.norm.ppf(p), rtol=1e-9, atol=1e-12)


def test_plot_roc(tmp_path: Path, scores: tuple[np.ndarray, np.ndarray]) -> None:
    tar, non = scores
    fpr, tpr, _ = metrics.roc(np.r_[tar, non], np.r_[np.ones(tar.size), np.zeros(non.size)])
    eer, _ = metrics.eer(tar, non)
    out = plots.plot_roc(fpr, tpr, eer, tmp_path / "sub" / "roc.png", title="test")
    assert out == tmp_path / "sub" / "roc.png" and _is_png(out)
    with pytest.raises(ValueError, match="same length"):
        plots.plot_roc(fpr, tpr[:-1], eer, tmp_path / "x.png")
    with pytest.raises(ValueError, match="eer"):
        plots.plot_roc(fpr, tpr, 1.5, tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"fpr must lie in \[0"):
        plots.plot_roc(fpr * 2, tpr, eer, tmp_path / "x.png")


def test_plot_det(tmp_path: Path, scores: tuple[np.ndarray, np.ndarray]) -> None:
    tar, non = scores
    far, frr, thr = metrics.det_curve(tar, non)
    eer, _ = metrics.eer(tar, non)
    _, dcf_thr = metrics.min_dcf(tar, non)
    point = (float(np.mean(non >= dcf_thr)), float(np.mean(tar < dcf_thr)))
    out = plots.plot_det(far, frr, tmp_path / "det.png", eer=eer, min_dcf_point=point)
    assert _is_png(out)
    assert _is_png(plots.plot_det(far, frr, str(tmp_path / "plain.png")))
    with pytest.raises(ValueError, match="differ in shape"):
        plots.plot_det(far, frr[1:], tmp_path / "x.png")
    with pytest.raises(ValueError, match="NaN"):
        plots.plot_det(np.r_[far[:-1], np.nan], frr, tmp_path / "x.png")
    with pytest.raises(ValueError, match="pair"):
        plots.plot_det(far, frr, tmp_path / "x.png", min_dcf_point=(0.1,))


def test_plot_score_histogram(tmp_path: Path, scores: tuple[np.ndarray, np.ndarray]) -> None:
    tar, non = scores
    assert _is_png(plots.plot_score_histogram(tar, non, tmp_path / "hist.png", threshold=1.0))
    with pytest.raises(ValueError, match="non-empty"):
        plots.plot_score_histogram([], non, tmp_path / "x.png")
    with pytest.raises(ValueError, match="threshold"):
        plots.plot_score_histogram(tar, non, tmp_path / "x.png", threshold=float("nan"))


def test_plot_training(tmp_path: Path) -> None:
    history = [
        {"epoch": e, "loss": 5.0 / e, "accuracy": 1 - 1 / (e + 1), "lr": 1e-3 * 0.8**e}
        for e in range(1, 6)
    ]
    history[2]["val_eer"] = 0.2
    history[4]["val_eer"] = 0.1
    assert _is_png(plots.plot_training(history, tmp_path / "train.png"))
    with pytest.raises(ValueError, match="empty"):
        plots.plot_training([], tmp_path / "x.png")
    with pytest.raises(ValueError, match="entry 0 lacks lr"):
        plots.plot_training([{"epoch": 1, "loss": 1.0, "accuracy": 0.5}], tmp_path / "x.png")


def test_without_matplotlib_pictures_are_skipped_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """matplotlib is the plots extra: its callers skip the picture and say how to get it."""
    from voiceprint.diarization import Segment
    from voiceprint.diarization.pipeline import Diarization

    result = Diarization("talk", 4.0, [Segment(0.5, 3.0, "unknown-1")], [])
    assert plots.can_draw("x.png")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    with caplog.at_level(logging.WARNING, logger="voiceprint.plots"):
        assert not plots.can_draw("x.png")
        written = result.write(tmp_path, picture=True)
    assert set(written) == {"rttm", "json"} and not (tmp_path / "talk.png").exists()
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2 and all("pip install 'voiceprint[plots]'" in w for w in warned)
    assert "talk.png skipped" in warned[1]
