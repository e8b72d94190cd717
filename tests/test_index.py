"""Identification through the faiss index: equal to brute force (plain cosine and AS-norm),
exact and IVF, incremental updates equal a fresh rebuild, stale indexes follow the store."""

from __future__ import annotations

import numpy as np
import pytest

from tests.oracles import brute_force_identify
from voiceprint.scoring import Backend, Scorer
from voiceprint.store import SpeakerDB
from voiceprint.store import index as store_index
from voiceprint.store import sync as store_sync

D = 24


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def asnorm_scorer(seed: int = 0) -> Scorer:
    rng = np.random.default_rng(seed)
    mean = 0.3 * rng.standard_normal(D)
    cohort = _unit(rng.standard_normal((60, D)))
    return Scorer(Backend(mean=mean, cohort=cohort, asnorm_top=10))


def clustered(rng: np.random.Generator, n: int, clusters: int = 12) -> np.ndarray:
    """Speaker embeddings around a few centres (so the IVF cells mean something)."""
    centres = rng.standard_normal((clusters, D))
    return (centres[rng.integers(0, clusters, n)] + 0.6 * rng.standard_normal((n, D))).astype(
        np.float32
    )


def reference(scorer: Scorer, sums: dict[str, np.ndarray], probe: np.ndarray, top: int):
    """Every speaker scored by the scorer at once (the store's former brute-force path)."""
    names = sorted(sums)
    models = _unit(np.stack([sums[n] for n in names]).astype(np.float64)).astype(np.float32)
    units = scorer.units(probe[None])
    scores = scorer.score(models, units, scorer.norm_stats(models))[:, 0]
    order = np.argsort(-scores, kind="stable")[:top]
    return [names[i] for i in order], scores[order]


def test_search_rows_inner_product_is_the_score() -> None:
    rng = np.random.default_rng(1)
    for scorer in (Scorer(), asnorm_scorer()):
        enroll = scorer.units(rng.standard_normal((30, D)))
        probes = scorer.units(rng.standard_normal((5, D)))
        rows = scorer.search_rows(enroll)
        query, offset = scorer.search_probe(probes)
        assert rows.shape[1] == query.shape[1] == scorer.search_width(D)
        np.testing.assert_allclose(
            rows @ query.T + offset[None], scorer.score(enroll, probes), atol=1e-5
        )
        np.testing.assert_allclose(scorer.search_units(rows), enroll, atol=1e-6)


@pytest.mark.parametrize("backend", ["cosine", "asnorm"])
@pytest.mark.parametrize("kind", ["exact", "ivf", "numpy"])
def test_identify_equals_brute_force(tmp_path, monkeypatch, backend: str, kind: str) -> None:
    rng = np.random.default_rng(2)
    scorer = Scorer() if backend == "cosine" else asnorm_scorer()
    emb = clustered(rng, 600)
    names = [f"spk{i:04d}" for i in range(600)]
    if kind == "numpy":
        monkeypatch.setattr(store_index, "faiss", None)
    # IVF reading every cell must find exactly what the exact search finds.
    options = {"approximate_from": 100, "nprobe": 10_000} if kind == "ivf" else {}
    with SpeakerDB(tmp_path / "s.db", "m", scorer, **options) as db:
        db.enroll_many(names, emb)
        assert db.index_kind == kind
        sums = {n: scorer.units(e[None])[0] for n, e in zip(names, emb, strict=True)}
        for probe in [emb[5] + 0.2 * rng.standard_normal(D), rng.standard_normal(D)]:
            got = db.identify(probe, top=7)
            want_names, want_scores = reference(scorer, sums, probe.astype(np.float32), 7)
            assert [m.name for m in got] == want_names
            np.testing.assert_allclose([m.score for m in got], want_scores, atol=1e-6)
            if backend == "cosine":  # and the plain-Python reference agrees
                loop = brute_force_identify(sums.items(), probe, top=7)
                assert [n for n, _ in loop] == want_names
            # verify scores a speaker exactly as identify ranks it
            assert db.verify(got[0].name, probe).score == pytest.approx(got[0].score, abs=1e-9)


def test_ivf_recall_with_default_probes(tmp_path) -> None:
    """Probes near enrolled speakers, default nprobe: the right one comes first."""
    rng = np.random.default_rng(3)
    emb = clustered(rng, 4000, clusters=40)
    names = [f"s{i}" for i in range(4000)]
    with SpeakerDB(tmp_path / "s.db", "m", approximate_from=1000) as db:
        db.enroll_many(names, emb)
        assert db.index_kind == "ivf"
        targets = rng.integers(0, 4000, 100)
        hits = sum(
            db.identify(emb[t] + 0.3 * rng.standard_normal(D).astype(np.float32), top=1)[0].name
            == names[t]
            for t in targets
        )
    assert hits >= 97


def _snapshot(db: SpeakerDB, probes: np.ndarray) -> list[list[tuple[str, float]]]:
    return [[(m.name, round(m.score, 5)) for m in db.identify(p, top=10)] for p in probes]


@pytest.mark.parametrize("kind", ["exact", "ivf"])
def test_incremental_updates_equal_a_fresh_rebuild(location, kind: str, monkeypatch) -> None:
    rng = np.random.default_rng(4)
    scorer = asnorm_scorer(1)
    options = {"approximate_from": 200, "nprobe": 10_000} if kind == "ivf" else {}
    emb = clustered(rng, 400)
    probes = np.concatenate([emb[:20] + 0.2 * rng.standard_normal((20, D)), emb[300:310]])
    with SpeakerDB(location, "m", scorer, **options) as db:
        db.enroll_many([f"s{i:03d}" for i in range(300)], emb[:300])
        db.identify(probes[0])  # builds the index
        index = db._index.state.index
        rebuilds = []
        monkeypatch.setattr(
            db._index, "rebuild", lambda: rebuilds.append(1) or pytest.fail("rebuilt")
        )
        for i in range(300, 330):  # new speakers, one write each
            db.enroll(f"s{i:03d}", emb[i])
        db.enroll("s007", emb[301:303])  # appended recordings move s007's model
        db.remove("s010")
        db.remove("s311")
        db.enroll("s010", emb[399])  # back, with another voice
        got = _snapshot(db, probes)
        assert db._index.state.index is index and not rebuilds  # updated in place
        assert db.gallery_size == 329 and db.index_kind == kind
    with SpeakerDB(location, "m", scorer, **options) as fresh:
        assert _snapshot(fresh, probes) == got
    assert "s311" not in {name for ranked in got for name, _ in ranked}


def test_another_connection_writes_are_seen_by_the_next_identify(location) -> None:
    rng = np.random.default_rng(5)
    emb = clustered(rng, 50)
    writer = SpeakerDB(location, "m")
    reader = SpeakerDB(location, "m")
    try:
        writer.enroll_many([f"s{i}" for i in range(40)], emb[:40])
        assert reader.identify(emb[3], top=1)[0].name == "s3"  # builds its index
        index = reader._index.state.index
        writer.enroll("newcomer", emb[45])
        writer.remove("s3")
        best = reader.identify(emb[45], top=1)[0]
        assert (best.name, best.score) == ("newcomer", pytest.approx(1.0, abs=1e-6))
        assert "s3" not in [m.name for m in reader.identify(emb[3], top=40)]
        assert reader._index.state.index is index  # followed the change log in place
        assert reader.gallery_size == 40 == len(reader)
    finally:
        writer.close()
        reader.close()


def test_bulk_writes_and_a_pruned_log_rebuild_the_index(location, monkeypatch) -> None:
    rng = np.random.default_rng(6)
    emb = clustered(rng, 60)
    monkeypatch.setattr(store_sync, "CHANGE_LOG_NAMES", 5)
    monkeypatch.setattr(store_sync, "CHANGE_LOG_KEEP", 3)
    with SpeakerDB(location, "m") as writer, SpeakerDB(location, "m") as reader:
        writer.enroll_many([f"s{i}" for i in range(10)], emb[:10])
        reader.identify(emb[0])
        first = reader._index.state.index
        writer.enroll_many([f"b{i}" for i in range(10)], emb[10:20])  # bulk: logs "rebuild"
        assert reader.identify(emb[15], top=1)[0].name == "b5"
        second = reader._index.state.index
        assert second is not first
        for i in range(20, 25):  # more writes than the log keeps
            writer.enroll(f"c{i}", emb[i])
        assert reader.identify(emb[22], top=1)[0].name == "c22"
        assert reader._index.state.index is not second and reader.gallery_size == 25
        kept = writer._conn.execute("SELECT COUNT(DISTINCT version) FROM changes").fetchone()[0]
        assert kept == 3


def test_index_kind_follows_the_gallery_size(tmp_path) -> None:
    rng = np.random.default_rng(7)
    emb = clustered(rng, 120)
    with SpeakerDB(tmp_path / "s.db", "m", approximate_from=100) as db:
        db.enroll_many([f"s{i:03d}" for i in range(90)], emb[:90])
        assert db.index_kind == "exact"
        for i in range(90, 110):
            db.enroll(f"s{i:03d}", emb[i])
        assert db.index_kind == "ivf"
        for i in range(70):
            db.remove(f"s{i:03d}")
        assert db.index_kind == "exact"  # below half the threshold
        assert db.identify(emb[100], top=1)[0].name == "s100"


def test_a_version_1_store_is_upgraded(tmp_path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # the tables as schema 1 made them
        conn.executescript(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "INSERT INTO meta VALUES ('schema', '1');"
            "CREATE TABLE speakers (name TEXT PRIMARY KEY, model_id TEXT NOT NULL, dim INTEGER "
            "NOT NULL, count INTEGER NOT NULL, unit_sum BLOB NOT NULL, created REAL NOT NULL, "
            "updated REAL NOT NULL);"
            "CREATE TABLE embeddings (id INTEGER PRIMARY KEY AUTOINCREMENT, speaker TEXT NOT NULL "
            "REFERENCES speakers(name) ON DELETE CASCADE, model_id TEXT NOT NULL, vector BLOB NOT "
            "NULL, source TEXT, created REAL NOT NULL);"
        )
        vector = _unit(np.ones(D, dtype=np.float32))
        conn.execute(
            "INSERT INTO speakers VALUES ('alice', 'm', ?, 1, ?, 0, 0)", (D, vector.tobytes())
        )
        conn.execute("INSERT INTO embeddings VALUES (NULL, 'alice', 'm', ?, NULL, 0)", (vector,))
    with SpeakerDB(path, "m") as db:
        assert len(db) == 1 and db.identify(vector)[0].name == "alice"
        db.enroll("bob", -vector)
        assert len(db) == 2 and db.identify(-vector)[0].name == "bob"
        assert db._conn.execute("SELECT value FROM meta").fetchone()[0] == "2"
