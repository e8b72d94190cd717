"""Figures of an experiment: ROC with the EER point, DET, score histograms, training curves,
calibration (LLR histograms and reliability).

Each function writes one PNG (parent folders are created) and returns its path. Figures
are drawn on matplotlib's Agg canvas directly, without pyplot, so importing or calling
this module never changes the global backend or opens a window. Rates are fractions.

matplotlib is the ``plots`` extra, imported only when a figure is drawn: callers ask
:func:`can_draw` first, so evaluation, calibration, training and diarization run
without it and skip their pictures with a one-line warning.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from voiceprint import metrics

__all__ = [
    "can_draw",
    "plot_calibration",
    "plot_det",
    "plot_roc",
    "plot_score_histogram",
    "plot_timeline",
    "plot_training",
    "probit",
]

log = logging.getLogger(__name__)

# Candidate DET ticks, in order of preference where two would crowd each other.
_DET_TICKS = (0.01, 0.1, 0.001, 0.5, 0.0001, 0.05, 0.2, 0.9, 0.02, 0.005, 0.4, 0.8, 0.99, 0.002)
_DET_LIMITS = (0.0001, 0.001, 0.005, 0.01, 0.5, 0.6, 0.8, 0.9, 0.95, 0.99)


def can_draw(what: str) -> bool:
    """True when matplotlib imports; else False, after one warning line saying that
    ``what`` (the pictures) is skipped and which extra draws it."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        log.warning("%s skipped: pictures need matplotlib: pip install 'voiceprint[plots]'", what)
        return False
    return True


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols)
    return fig, axes


def _save(fig: Any, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def _curve(x: Any, name: str, lo: float | None = 0.0, hi: float | None = 1.0) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if (lo is not None and arr.min() < lo) or (hi is not None and arr.max() > hi):
        raise ValueError(f"{name} must lie in [{lo}, {hi}]")
    return arr


def _rate(value: float, name: str) -> float:
    if not (np.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be a rate in [0, 1], got {value}")
    return float(value)


def _percent(p: float) -> str:
    return f"{100 * p:g}%"


def probit(p: Any) -> np.ndarray:
    """Standard normal deviate (inverse CDF) of probabilities in (0, 1), elementwise."""
    arr = np.asarray(p, dtype=np.float64)
    inv = NormalDist().inv_cdf
    return np.array([inv(v) for v in arr.ravel()]).reshape(arr.shape)


def _det_ticks(lo: float, hi: float) -> list[float]:
    """Ticks within [lo, hi], taken in preference order, none closer than 1/12 of the span."""
    gap = (probit(hi) - probit(lo)) / 12
    kept: list[float] = []
    for t in _DET_TICKS:
        if lo <= t <= hi and all(abs(probit(t) - probit(k)) >= gap for k in kept):
            kept.append(t)
    return sorted(kept)


def plot_roc(
    fpr: Sequence[float] | np.ndarray,
    tpr: Sequence[float] | np.ndarray,
    eer: float,
    path: str | Path,
    title: str = "ROC",
) -> Path:
    """ROC curve, the line TPR = 1 - FPR, and the EER point (eer, 1 - eer) on it; AUC shown."""
    x = _curve(fpr, "fpr")
    y = _curve(tpr, "tpr")
    if x.shape != y.shape or x.size < 2:
        raise ValueError(f"fpr {x.shape} and tpr {y.shape} need the same length >= 2")
    e = _rate(eer, "eer")
    area = metrics.auc(x, y)
    fig, ax = _figure(5.0, 5.0)
    ax.plot(x, y, color="C0", lw=1.8, label=f"ROC (AUC = {area:.4f})")
    ax.plot([0, 1], [1, 0], color="0.6", ls="--", lw=1.0, label="TPR = 1 - FPR")
    ax.plot([0, 1], [0, 1], color="0.85", ls=":", lw=1.0)
    ax.plot([e], [1 - e], "o", color="C3", ms=7, label=f"EER = {100 * e:.2f}%")
    ax.annotate(
        f"EER {100 * e:.2f}%",
        xy=(e, 1 - e),
        xytext=(min(e + 0.08, 0.7), max(1 - e - 0.12, 0.1)),
        arrowprops={"arrowstyle": "->", "color": "C3"},
        color="C3",
    )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("False positive rate (FAR)")
    ax.set_ylabel("True positive rate (1 - FRR)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_det(
    far: Sequence[float] | np.ndarray,
    frr: Sequence[float] | np.ndarray,
    path: str | Path,
    eer: float | None = None,
    min_dcf_point: tuple[float, float] | None = None,
    title: str = "DET",
) -> Path:
    """DET curve (FRR against FAR) on normal-deviate axes with percentage ticks.

    Points with a rate of exactly 0 or 1 have no finite deviate and are left out.
    ``eer`` marks (eer, eer); ``min_dcf_point`` is the (far, frr) of the minDCF threshold.
    """
    x = _curve(far, "far")
    y = _curve(frr, "frr")
    if x.shape != y.shape:
        raise ValueError(f"far {x.shape} and frr {y.shape} differ in shape")
    inside = (x > 0) & (x < 1) & (y > 0) & (y < 1)
    marks = []
    if eer is not None:
        e = _rate(eer, "eer")
        marks.append((e, e, f"EER = {100 * e:.2f}%", "o", "C3"))
    if min_dcf_point is not None:
        if len(min_dcf_point) != 2:
            raise ValueError("min_dcf_point must be a (far, frr) pair")
        pf = _rate(min_dcf_point[0], "min_dcf_point far")
        pm = _rate(min_dcf_point[1], "min_dcf_point frr")
        marks.append((pf, pm, "minDCF point", "s", "C2"))

    values = np.concatenate([x[inside], y[inside], [m[0] for m in marks], [m[1] for m in marks]])
    values = values[(values > 0) & (values < 1)]
    low_value = values.min() if values.size else 0.001
    lo = max([v for v in _DET_LIMITS if v <= max(low_value, 1e-4)])
    high_mark = max([0.0] + [max(m[0], m[1]) for m in marks])
    hi = min([v for v in _DET_LIMITS if v >= min(max(0.5, high_mark * 1.05), 0.99)])
    ticks = _det_ticks(lo, hi)

    fig, ax = _figure(5.0, 5.0)
    ax.plot(probit(x[inside]), probit(y[inside]), color="C0", lw=1.8, label="DET")
    lim = probit([lo, hi])
    ax.plot(lim, lim, color="0.6", ls="--", lw=1.0, label="FRR = FAR")
    for mx, my, label, marker, color in marks:
        px, py = probit(np.clip([mx, my], lo, hi))
        ax.plot([px], [py], marker, color=color, ms=7, label=label)
    ax.set_xlim(*lim)
    ax.set_ylim(*lim)
    ax.set_xticks(probit(ticks), [_percent(t) for t in ticks])
    ax.set_yticks(probit(ticks), [_percent(t) for t in ticks])
    ax.set_xlabel("False acceptance rate")
    ax.set_ylabel("False rejection rate")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    return _save(fig, path)


def plot_score_histogram(
    target: Sequence[float] | np.ndarray,
    nontarget: Sequence[float] | np.ndarray,
    path: str | Path,
    threshold: float | None = None,
    title: str = "Score distributions",
) -> Path:
    """Density histograms of target and non-target scores on shared bins; optional threshold."""
    t = _curve(target, "target scores", None, None)
    n = _curve(nontarget, "non-target scores", None, None)
    if threshold is not None and not np.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}")
    edges = np.histogram_bin_edges(
        np.concatenate([t, n]), bins=min(60, max(10, (t.size + n.size) // 20))
    )
    fig, ax = _figure(6.0, 4.0)
    ax.hist(n, bins=edges, density=True, alpha=0.55, color="C0", label=f"non-target (n={n.size})")
    ax.hist(t, bins=edges, density=True, alpha=0.55, color="C1", label=f"target (n={t.size})")
    if threshold is not None:
        ax.axvline(threshold, color="C3", ls="--", label=f"threshold = {threshold:.3f}")
    ax.set_xlabel("score")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)


_HISTORY_KEYS = ("epoch", "loss", "accuracy", "lr")


def plot_training(history: Sequence[dict[str, float]], path: str | Path) -> Path:
    """Training curves: loss (with the learning rate on a twin axis) and accuracy per epoch.

    Each entry needs ``epoch``, ``loss``, ``accuracy`` (fraction) and ``lr``; entries with
    ``val_eer`` (fraction) add validation EER to the accuracy panel.
    """
    if len(history) == 0:
        raise ValueError("history is empty")
    for i, entry in enumerate(history):
        missing = [k for k in _HISTORY_KEYS if k not in entry]
        if missing:
            raise ValueError(f"history entry {i} lacks {', '.join(missing)}")
    cols = {k: np.array([float(h[k]) for h in history]) for k in _HISTORY_KEYS}
    for key, arr in cols.items():
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"history {key} contains NaN or infinite values")
    val = [
        (float(h["epoch"]), float(h["val_eer"])) for h in history if h.get("val_eer") is not None
    ]

    fig, (ax_loss, ax_acc) = _figure(10.0, 4.0, ncols=2)
    ax_loss.plot(cols["epoch"], cols["loss"], "o-", color="C0", label="loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss", color="C0")
    ax_loss.grid(alpha=0.3)
    ax_lr = ax_loss.twinx()
    ax_lr.plot(cols["epoch"], cols["lr"], "--", color="C2", label="learning rate")
    if np.all(cols["lr"] > 0):
        ax_lr.set_yscale("log")
    ax_lr.set_ylabel("learning rate", color="C2")
    lines = ax_loss.get_lines() + ax_lr.get_lines()
    ax_loss.legend(lines, [ln.get_label() for ln in lines], loc="upper right")
    ax_loss.set_title("Loss and learning rate")

    ax_acc.plot(cols["epoch"], cols["accuracy"], "o-", color="C1", label="train accuracy")
    if val:
        ve, vv = zip(*val, strict=True)
        ax_acc.plot(ve, vv, "s--", color="C3", label="validation EER")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("fraction")
    ax_acc.set_ylim(0, 1.02)
    ax_acc.grid(alpha=0.3)
    ax_acc.legend(loc="center right")
    ax_acc.set_title("Accuracy and validation EER" if val else "Accuracy")
    return _save(fig, path)


def plot_calibration(
    target_llr: Sequence[float] | np.ndarray,
    nontarget_llr: Sequence[float] | np.ndarray,
    path: str | Path,
    p_target: float = 0.01,
) -> Path:
    """Calibration of LLRs, two panels.

    Left: LLR histograms of target and non-target trials with the Bayes threshold
    ``-logit(p_target)``. Right: reliability; the trials binned by LLR (deciles of all
    trials), each bin's empirical log-likelihood ratio ``log(n_tar/N_tar) -
    log(n_non/N_non)`` against its mean LLR; a calibrated system lies on the diagonal.
    """
    t = _curve(target_llr, "target LLRs", None, None)
    n = _curve(nontarget_llr, "non-target LLRs", None, None)
    threshold = metrics.bayes_threshold(p_target)
    fig, (left, right) = _figure(10.0, 4.0, ncols=2)
    edges = np.histogram_bin_edges(np.concatenate([t, n]), bins=60)
    left.hist(n, bins=edges, density=True, alpha=0.55, color="C0", label=f"non-target (n={n.size})")
    left.hist(t, bins=edges, density=True, alpha=0.55, color="C1", label=f"target (n={t.size})")
    left.axvline(threshold, color="C3", ls="--", label=f"Bayes threshold (P_tar {p_target:g})")
    left.set_xlabel("LLR (natural log)")
    left.set_ylabel("density")
    left.set_title("LLR distributions")
    left.legend(fontsize=8)
    both = np.concatenate([t, n])
    bins = np.unique(np.quantile(both, np.linspace(0, 1, 11)))
    centres, empirical = [], []
    for lo, hi in zip(bins[:-1], bins[1:], strict=True):
        in_t = (t >= lo) & (t <= hi)
        in_n = (n >= lo) & (n <= hi)
        if in_t.sum() == 0 or in_n.sum() == 0:
            continue
        centres.append(np.concatenate([t[in_t], n[in_n]]).mean())
        empirical.append(np.log(in_t.sum() / t.size) - np.log(in_n.sum() / n.size))
    span = [min(both.min(), *empirical, 0.0), max(both.max(), *empirical, 0.0)]
    right.plot(span, span, color="0.6", ls=":", label="calibrated")
    right.plot(centres, empirical, "o-", color="C2", label="empirical (LLR deciles)")
    right.axvline(threshold, color="C3", ls="--", lw=0.8)
    right.set_xlabel("predicted LLR")
    right.set_ylabel("empirical LLR")
    right.set_title("Reliability")
    right.legend(fontsize=8)
    return _save(fig, path)


def plot_timeline(
    turns: Sequence[tuple[float, float, str]],
    path: str | Path,
    duration: float | None = None,
    reference: Sequence[tuple[float, float, str]] | None = None,
    title: str = "Who spoke when",
) -> Path:
    """Diarization timeline: one row per speaker label, a bar per (start s, end s, label)
    turn; with ``reference``, the true turns are drawn in grey rows beneath."""
    rows: list[tuple[str, list[tuple[float, float]], str]] = []
    labels = sorted(
        {t[2] for t in turns}, key=lambda name: min(t[0] for t in turns if t[2] == name)
    )
    for i, label in enumerate(labels):
        rows.append((label, [(a, b - a) for a, b, name in turns if name == label], f"C{i % 10}"))
    if reference is not None:
        truth = sorted({t[2] for t in reference})
        for label in truth:
            spans = [(a, b - a) for a, b, name in reference if name == label]
            rows.append((f"truth: {label}", spans, "0.55"))
    ends = [a + w for _, spans, _ in rows for a, w in spans]
    end = duration if duration is not None else max(ends, default=1.0)
    if not np.isfinite(end) or end <= 0:
        raise ValueError(f"duration must be positive, got {end}")
    fig, ax = _figure(10.0, 1.2 + 0.45 * max(len(rows), 1))
    for i, (_, spans, color) in enumerate(rows):
        ax.broken_barh(spans, (i - 0.4, 0.8), facecolors=color)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(0, end)
    ax.set_xlabel("time (s)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)
