"""Stage 6, naming: put enrolled names on speaker clusters.

Each cluster's voice is the mean of its windows' embeddings (D,); the store
(:class:`voiceprint.store.SpeakerDB`) scores it against every enrolled speaker with the
model's scorer, and the best match names the cluster when the model's decision (at the
prior ``NAMING_PRIOR`` of a voice being enrolled), made open-set for the store's size
(:meth:`Decision.for_gallery`), accepts its LLR. Two clusters that the decision gives the
same name are one speaker split in two: they are joined (``join_same_name``). Clusters
without a name are ``unknown-1``, ``unknown-2``... in order of first appearance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from voiceprint.scoring import ACCEPT, UNKNOWN, Decision

# Prior that a voice found in a recording is an enrolled one (spread over the enrolled
# speakers by Decision.for_gallery). The model's stored decision is for verification
# (Bayes at P_target 0.01); a cluster's voice is the mean of many short windows, whose
# LLRs against its own speaker run lower than one clip's. Chosen on simulated so762 dev
# conversations (30 of 60 speakers enrolled). For the model of 2026-12-03: at 0.05, 99%
# of enrolled speakers' detected speech is named right and 10% of the others' speech takes
# an enrolled name; at 0.02, 78% and 0.1%; at 0.5, 98% and 43%. The five-corpus model of
# 2026-12-05 is calibrated more cautiously for long trials (a cosine of 0.7 is LLR 4.0
# against 7.4 before): at 0.05 it named 19% of enrolled speech in 30-s conversations, at
# 0.2 60%, at 0.5 82% (74% / 96% / 99% at 2 and 10 min), with 7% / 15% / 0.2% misnamed
# at 30 s / 2 min / 10 min, as the earlier model at 0.05 (benchmarks/results/diarization.md).
NAMING_PRIOR = 0.5


def naming_decision(decision: Decision | None, calibrated: bool) -> Decision | None:
    """The decision for naming clusters: the model's, at prior ``NAMING_PRIOR`` when its
    scores are calibrated LLRs (kept as it is otherwise)."""
    if decision is None or not calibrated:
        return decision
    return decision.at_prior(NAMING_PRIOR)


@dataclass(frozen=True)
class ClusterName:
    """What one cluster is called: ``speaker`` (the name, or ``unknown-N``), ``name`` (the
    enrolled name, or ``"unknown"``) and the best match's ``score``, ``llr`` and ``match``
    (the best enrolled speaker even when rejected; None without a store)."""

    speaker: str
    name: str
    score: float | None = None
    llr: float | None = None
    match: str | None = None


def cluster_embeddings(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mean window embedding per cluster: (W, D), labels (W,) in 0..K-1 -> (K, D)."""
    k = int(labels.max()) + 1 if len(labels) else 0
    return np.stack([embeddings[labels == c].mean(0) for c in range(k)]).astype(np.float32)


def name_clusters(
    embeddings: np.ndarray,
    labels: np.ndarray,
    db: Any | None = None,
    decision: Decision | None = None,
    *,
    join_same_name: bool = True,
) -> tuple[np.ndarray, list[ClusterName]]:
    """Name clusters against ``db``: returns (labels (W,) after joining, names per label).

    Without a store (or without a decision, or with nobody enrolled) every cluster is
    unknown. ``decision`` is the model's (``embedder.decision``) or the caller's choice.
    """
    labels = np.asarray(labels, dtype=np.int64)
    k = int(labels.max()) + 1 if len(labels) else 0
    matches: list[tuple[str | None, float | None, float | None, bool]] = []
    usable = db is not None and decision is not None and db.gallery_size > 0
    if usable:
        open_set = decision.for_gallery(db.gallery_size)  # type: ignore[union-attr]
        for voice in cluster_embeddings(embeddings, labels):
            best = db.identify(voice, top=1)[0]  # type: ignore[union-attr]
            accepted = open_set.judge(best.llr) == ACCEPT  # windows: no speech floor
            matches.append((best.name, best.score, best.llr, accepted))
    else:
        matches = [(None, None, None, False)] * k

    # The same accepted name on several clusters: keep the strongest, join the others in.
    owner: dict[str, int] = {}
    target = np.arange(k)
    for c in sorted(range(k), key=lambda c: -(matches[c][2] or 0.0)):
        name, _, _, accepted = matches[c]
        if not accepted or name is None:
            continue
        if name in owner and join_same_name:
            target[c] = owner[name]
        else:
            owner.setdefault(name, c)
    joined = target[labels]
    # Relabel 0..K'-1 by first appearance; name each new label from its kept cluster.
    _, first = np.unique(joined, return_index=True)
    kept = joined[np.sort(first)]
    relabel = {int(old): new for new, old in enumerate(kept)}
    out_labels = np.array([relabel[int(v)] for v in joined], dtype=np.int64)
    names: list[ClusterName] = []
    unknown = 0
    for old in kept:
        name, score, llr, accepted = matches[int(old)]
        if accepted and name is not None and owner.get(name) == int(old):
            names.append(ClusterName(name, name, score, llr, name))
        else:
            unknown += 1
            names.append(ClusterName(f"{UNKNOWN}-{unknown}", UNKNOWN, score, llr, name))
    return out_labels, names
