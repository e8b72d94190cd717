"""Stage 4, clustering: window embeddings -> speaker labels, and how many speakers.

Embeddings go through the model's scorer first (:meth:`Scorer.units`: its mean
subtraction, projection and length normalisation), windows and clusters are compared by
the scorer's cosine (:meth:`Scorer.cosine`, its score before AS-norm) and a cluster is
modelled as the scorer models a speaker (:meth:`Scorer.model_of_units`). Two methods,
both built on scipy / scikit-learn:

* ``"ahc"``: average-linkage agglomerative clustering, stopped where the two closest
  clusters' mean score falls below a threshold. The threshold is set as an LLR on the
  model's calibration (``stop_llr``) and turned into a score by inverting it, so it moves
  with the model; an uncalibrated model takes ``stop_llr`` as the score itself.
* ``"spectral"``: spectral clustering of the pruned cosine affinity; the count comes
  from the largest eigengap of its normalised Laplacian.

``num_speakers`` fixes the count; ``min_speakers`` / ``max_speakers`` bound an estimated
one. Clusters too small to be a speaker (less than ``min_cluster_share`` of the windows,
when the count is estimated) are folded into the nearest other cluster, and every window
is then re-assigned to its nearest cluster centre. Above ``MAX_POINTS`` windows, k-means
first summarises them into ``MAX_POINTS`` centres, so time and memory stay linear in the
recording. Labels are 0..K-1 in order of first appearance.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from voiceprint.scoring import Scorer, trial_quality

STOP_LLR = -1.0  # AHC stops when the closest clusters' mean score has a lower LLR than this
# Clusters with fewer windows than the larger of MIN_CLUSTER_SHARE (7%) of them and
# MIN_CLUSTER_WINDOWS are folded into others (estimated count only): windows of overlapped
# speech or of one odd clip otherwise become "speakers". The share alone (0.12) folded
# every speaker under ~4 s of a 30-s recording; the floor of 3 windows (2.25 s of
# speech) keeps short files' minor speakers and still folds stray windows. With AHC's stop
# at LLR -1 (was 0), chosen on the AMI dev excerpts and simulated 30-s and 2-min so762 dev
# conversations together (benchmarks/results/diarization.md).
MIN_CLUSTER_SHARE = 0.07
MIN_CLUSTER_WINDOWS = 3
MAX_POINTS = 2000  # above this many windows, k-means summarises them first
METHODS = ("ahc", "spectral")
PRUNE = 0.1  # spectral: share of neighbours each window keeps in the affinity graph


def stop_score(
    scorer: Scorer, stop_llr: float = STOP_LLR, window_seconds: float | None = None
) -> float:
    """The score whose calibrated LLR is ``stop_llr`` for a trial of two windows of
    ``window_seconds`` of speech each (a quality-aware calibration scores such short
    trials on their own terms; None: as long trials); ``stop_llr`` itself, uncalibrated."""
    calibration = scorer.backend.calibration
    if calibration is None or not calibration.fitted or not calibration.scale:
        return float(stop_llr)
    quality = None if window_seconds is None else trial_quality(window_seconds, window_seconds)
    at_zero, at_one = calibration.llr(np.array([0.0, 1.0]), quality)
    return float((stop_llr - at_zero) / (at_one - at_zero))


def _first_appearance(labels: np.ndarray) -> np.ndarray:
    """Relabel to 0..K-1 in order of first appearance."""
    _, first = np.unique(labels, return_index=True)
    order = labels[np.sort(first)]
    mapping = {int(old): new for new, old in enumerate(order)}
    return np.array([mapping[int(v)] for v in labels], dtype=np.int64)


def _ahc(scorer: Scorer, units: np.ndarray, k: int | None, threshold: float) -> np.ndarray:
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    if len(units) == 1:
        return np.zeros(1, dtype=np.int64)
    # cosine distances (as scipy's "cosine" metric: clipped to [0, 2]), upper triangle
    distances = squareform(np.clip(1.0 - scorer.cosine(units, units), 0.0, 2.0), checks=False)
    tree = linkage(distances, method="average")
    if k is not None:
        return fcluster(tree, t=k, criterion="maxclust").astype(np.int64) - 1
    return fcluster(tree, t=1.0 - threshold, criterion="distance").astype(np.int64) - 1


def _count_for_threshold(scorer: Scorer, units: np.ndarray, threshold: float) -> int:
    return int(len(np.unique(_ahc(scorer, units, None, threshold))))


def _laplacian_spectrum(affinity: np.ndarray, keep: int, top: int) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (top + 1,) and eigenvectors (n, top + 1) of the normalised Laplacian of
    ``affinity`` (n, n) after each row keeps only its ``keep`` strongest neighbours."""
    from scipy.linalg import eigh

    n = len(affinity)
    cut = np.partition(affinity, n - keep, axis=1)[:, n - keep][:, None]
    pruned = np.where(affinity >= cut, affinity, 0.0)
    pruned = 0.5 * (pruned + pruned.T)
    np.fill_diagonal(pruned, 0.0)
    inv = 1.0 / np.sqrt(np.maximum(pruned.sum(1), 1e-10))
    laplacian = np.eye(n) - inv[:, None] * pruned * inv[None, :]
    return eigh(laplacian, subset_by_index=[0, top])


def _spectral(
    scorer: Scorer, units: np.ndarray, k: int | None, lo: int, hi: int, prune: float = PRUNE
) -> np.ndarray:
    """Spectral clustering of the cosine affinity, each row keeping its ``prune`` share of
    strongest neighbours; the count (when ``k`` is None) at the largest eigengap."""
    from sklearn.cluster import KMeans

    n = len(units)
    if n <= 2:
        return np.zeros(n, dtype=np.int64) if (k or 1) == 1 else np.arange(n, dtype=np.int64)
    affinity = np.clip(scorer.cosine(units, units), 0.0, 1.0)
    top = min(n - 1, max(hi, k or 1) + 1)
    values, vectors = _laplacian_spectrum(affinity, max(2, int(np.ceil(prune * n))), top)
    if k is None:
        gaps = np.diff(values[: hi + 1])
        k = int(np.argmax(gaps[lo - 1 : hi]) + lo)
    if k == 1:
        return np.zeros(n, dtype=np.int64)
    emb = vectors[:, :k]
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-10)
    return KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(emb).astype(np.int64)


def _centres(scorer: Scorer, units: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(k, D): each cluster's speaker model (the scorer's, of its windows' units)."""
    return np.stack([scorer.model_of_units(units[labels == c]) for c in range(k)])


def _fold_small(
    scorer: Scorer, units: np.ndarray, labels: np.ndarray, min_size: int, floor: int
) -> np.ndarray:
    """Fold clusters smaller than ``min_size`` into their nearest other cluster, smallest
    first, while more than ``floor`` clusters remain."""
    labels = _first_appearance(labels)
    while True:
        sizes = np.bincount(labels)
        small = [c for c in np.argsort(sizes, kind="stable") if sizes[c] < min_size]
        if not small or len(sizes) <= floor:
            return labels
        c = int(small[0])
        centres = _centres(scorer, units, labels, len(sizes))
        sims = scorer.cosine(centres, centres[c : c + 1])[:, 0]
        sims[c] = -np.inf
        labels = _first_appearance(np.where(labels == c, int(np.argmax(sims)), labels))


def cluster(
    embeddings: np.ndarray,
    scorer: Scorer | None = None,
    *,
    method: str = "ahc",
    num_speakers: int | None = None,
    min_speakers: int = 1,
    max_speakers: int | None = None,
    stop_llr: float = STOP_LLR,
    min_cluster_share: float = MIN_CLUSTER_SHARE,
    min_cluster_windows: int = MIN_CLUSTER_WINDOWS,
    max_points: int = MAX_POINTS,
    reassign: bool = True,
    window_seconds: float | None = None,
) -> np.ndarray:
    """Speaker labels (W,) int64 in 0..K-1 for window embeddings (W, D) of windows of
    ``window_seconds`` (the stop's LLR is that of a trial of two such windows)."""
    if method not in METHODS:
        raise ValueError(f"unknown clustering method {method!r}; choose from {METHODS}")
    x = np.asarray(embeddings, dtype=np.float64)
    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if num_speakers is not None and num_speakers < 1:
        raise ValueError(f"num_speakers must be at least 1, got {num_speakers}")
    hi = max_speakers if max_speakers is not None else 20
    if min_speakers < 1 or hi < min_speakers:
        raise ValueError(f"need 1 <= min_speakers <= max_speakers, got {min_speakers}, {hi}")
    lo = min_speakers
    if num_speakers is not None:
        lo = hi = num_speakers
    lo, hi = min(lo, n), min(hi, n)
    scorer = scorer or Scorer()
    units = scorer.units(x)

    points, owner = units, np.arange(n)
    if n > max_points:  # summarise: time and memory linear in the number of windows
        from sklearn.cluster import KMeans

        km = KMeans(n_clusters=max_points, n_init=1, random_state=0, max_iter=50).fit(units)
        points = km.cluster_centers_ / np.maximum(
            np.linalg.norm(km.cluster_centers_, axis=1, keepdims=True), 1e-10
        )
        owner = km.labels_

    fixed = num_speakers if num_speakers is not None else None
    threshold = stop_score(scorer, stop_llr, window_seconds)
    if method == "ahc":
        k = fixed
        if k is None:
            found = _count_for_threshold(scorer, points, threshold)
            if not lo <= found <= hi:
                k = int(np.clip(found, lo, hi))
        labels = _ahc(scorer, points, k, threshold)[owner]
    else:
        labels = _spectral(scorer, points, fixed, max(lo, 1), max(hi, 1))[owner]

    smallest = max(int(np.ceil(min_cluster_share * n)), min_cluster_windows)
    if num_speakers is None and smallest > 1:
        labels = _fold_small(scorer, units, labels, smallest, lo)
    if reassign and n > 1:
        k = int(labels.max()) + 1
        for _ in range(3):  # nearest-centre passes (k-means steps from the clustering)
            new = np.argmax(scorer.cosine(units, _centres(scorer, units, labels, k)), axis=1)
            if np.array_equal(new, labels) or len(np.unique(new)) < k:
                break
            labels = new
    return _first_appearance(labels)


def centroid_scores(embeddings: np.ndarray, labels: np.ndarray, scorer: Scorer | None) -> Any:
    """(K, K) scores between the clusters' speaker models (for reports and tests)."""
    scorer = scorer or Scorer()
    k = int(labels.max()) + 1
    models = np.stack([scorer.speaker_model(embeddings[labels == c]) for c in range(k)])
    return scorer.score(models, models)
