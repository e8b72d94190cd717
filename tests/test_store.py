"""SpeakerDB: enrollment, scores against a reference, model ids, persistence, 100k speakers."""

from __future__ import annotations

import numpy as np
import pytest

from tests.oracles import brute_force_identify
from voiceprint.store import ModelMismatchError, SpeakerDB, UnknownSpeakerError

D = 16


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture
def db(tmp_path):
    with SpeakerDB(tmp_path / "speakers.db", "model-a") as store:
        yield store


def test_verify_is_cosine_to_mean_of_normalised_embeddings(db):
    rng = np.random.default_rng(0)
    enroll = (rng.normal(size=(3, D)) * np.array([[1.0], [5.0], [0.2]])).astype(np.float32)
    probe = rng.normal(size=D).astype(np.float32)
    assert db.enroll("alice", enroll[:2]) == 2
    assert db.enroll("alice", enroll[2]) == 3  # appends
    mean = _unit(enroll.astype(np.float64)).mean(axis=0)
    expected = float(mean @ probe / (np.linalg.norm(mean) * np.linalg.norm(probe)))
    assert db.verify("alice", probe).score == pytest.approx(expected, abs=1e-6)
    # Scaling the probe or an enrollment row does not change the score.
    assert db.verify("alice", probe * 7).score == pytest.approx(expected, abs=1e-6)
    np.testing.assert_array_equal(db.embeddings("alice"), enroll)


def test_identify_matches_reference_and_orders_scores(db):
    rng = np.random.default_rng(1)
    names = [f"spk{i:02d}" for i in range(20)]
    emb = rng.normal(size=(40, D)).astype(np.float32)
    owners = [names[i % 20] for i in range(40)]
    db.enroll_many(owners, emb)
    probe = rng.normal(size=D)
    means = {n: _unit(emb[[i for i, o in enumerate(owners) if o == n]]).mean(0) for n in names}
    want = brute_force_identify(means.items(), probe, top=5)
    got = db.identify(probe, top=5)
    assert [m.name for m in got] == [n for n, _ in want]
    np.testing.assert_allclose([m.score for m in got], [s for _, s in want], atol=1e-5)
    assert all(m.llr == m.score for m in got)  # no calibration: the LLR is the score
    assert len(db.identify(probe, top=100)) == 20
    # A noisy copy of a speaker's mean finds that speaker first.
    assert db.identify(means["spk07"] + 0.01 * rng.normal(size=D), top=1)[0].name == "spk07"


def test_speakers_remove_and_unknown(db):
    rng = np.random.default_rng(2)
    db.enroll("bob", rng.normal(size=(2, D)))
    db.enroll("carol", rng.normal(size=(1, D)))
    assert [(s.name, s.count, s.model_id) for s in db.speakers()] == [
        ("bob", 2, "model-a"),
        ("carol", 1, "model-a"),
    ]
    assert "bob" in db and len(db) == 2
    assert db.remove("bob") == 2
    assert "bob" not in db
    assert [m.name for m in db.identify(rng.normal(size=D), top=3)] == ["carol"]
    with pytest.raises(UnknownSpeakerError, match="'bob' is not enrolled"):
        db.verify("bob", rng.normal(size=D))
    with pytest.raises(UnknownSpeakerError):
        db.remove("bob")
    # The embeddings went with the speaker.
    assert db._conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 1


def test_bad_input_is_refused(db):
    with pytest.raises(ValueError, match="non-empty"):
        db.enroll("  ", np.ones((1, D)))
    with pytest.raises(ValueError, match="non-zero"):
        db.enroll("x", np.zeros((1, D)))
    db.enroll("x", np.ones((1, D)))
    with pytest.raises(ValueError, match="8-dim"):
        db.enroll("x", np.ones((1, 8)))
    with pytest.raises(ValueError, match="8 dims"):
        db.verify("x", np.ones(8))
    with pytest.raises(ValueError, match="names for"):
        db.enroll_many(["a"], np.ones((2, D)))
    assert [s.count for s in db.speakers()] == [1]  # nothing half-written


def test_other_models_embeddings_are_refused(tmp_path):
    path = tmp_path / "s.db"
    rng = np.random.default_rng(3)
    with SpeakerDB(path, "model-a") as a:
        a.enroll("alice", rng.normal(size=(2, D)))
    with SpeakerDB(path, "model-b") as b:
        assert [s.model_id for s in b.speakers()] == ["model-a"]
        with pytest.raises(ModelMismatchError, match="enrolled with model model-a, not model-b"):
            b.verify("alice", rng.normal(size=D))
        with pytest.raises(ModelMismatchError):
            b.enroll("alice", rng.normal(size=(1, D)))
        with pytest.raises(ModelMismatchError, match="none of the 1 enrolled"):
            b.identify(rng.normal(size=D))
        with pytest.raises(ModelMismatchError):
            b.embeddings("alice")
        b.enroll("bob", rng.normal(size=(1, D)))  # its own speakers are fine
        assert [m.name for m in b.identify(rng.normal(size=D), top=5)] == ["bob"]


def test_persistence_wal_and_changes_from_another_connection(tmp_path):
    path = tmp_path / "s.db"
    rng = np.random.default_rng(4)
    first = SpeakerDB(path, "m")
    second = SpeakerDB(path, "m")
    assert first._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    first.enroll("alice", rng.normal(size=(1, D)))
    assert [m.name for m in second.identify(rng.normal(size=D))] == ["alice"]  # builds cache
    second_probe = rng.normal(size=D)
    first.enroll("bob", second_probe[None])
    # ``second`` sees the other connection's commit: its cache is rebuilt.
    best = second.identify(second_probe, top=1)[0]
    assert (best.name, best.score) == ("bob", pytest.approx(1.0, abs=1e-6))
    first.close()
    second.close()
    with SpeakerDB(path, "m") as again:
        assert [s.name for s in again.speakers()] == ["alice", "bob"]


def test_identify_among_100k_speakers(tmp_path):
    rng = np.random.default_rng(5)
    count, dim = 100_000, 64
    emb = rng.standard_normal((count, dim), dtype=np.float32)
    names = [f"speaker{i:06d}" for i in range(count)]
    with SpeakerDB(tmp_path / "big.db", "m") as db:
        db.enroll_many(names, emb)
        assert len(db) == count
        for target in (0, 31_337, count - 1):
            probe = emb[target] + 0.3 * rng.standard_normal(dim, dtype=np.float32)
            best = db.identify(probe, top=3)
            assert best[0].name == names[target]
            assert best[0].score > best[1].score >= best[2].score


def test_export_import_round_trip(db, tmp_path):
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(5, D)).astype(np.float32)
    db.enroll("alice", vectors[:3], sources=["a1.wav", "a2.wav", "a3.wav"])
    db.enroll("bob", vectors[3:])
    with SpeakerDB(db.path, "model-b") as other:  # another model's speaker: not exported
        other.enroll("zed", vectors[:1])
    probe = rng.normal(size=D).astype(np.float32)
    done = db.export_to(tmp_path / "backup.npz")
    assert done == {"speakers": 2, "embeddings": 5}
    with SpeakerDB(tmp_path / "restored.db", "model-a") as restored:
        assert restored.import_from(tmp_path / "backup.npz") == done
        assert [(s.name, s.count) for s in restored.speakers()] == [("alice", 3), ("bob", 2)]
        np.testing.assert_array_equal(restored.embeddings("alice"), vectors[:3])
        assert restored.verify("alice", probe).score == db.verify("alice", probe).score
        assert [m.name for m in restored.identify(probe)] == [m.name for m in db.identify(probe)]
        with pytest.raises(ValueError, match="2 of its speakers are already enrolled"):
            restored.import_from(tmp_path / "backup.npz")
        assert restored.speakers()[0].count == 3  # the refused import stored nothing


def test_import_refuses_another_models_file_and_damaged_files(db, tmp_path):
    db.enroll("alice", np.ones((1, D), dtype=np.float32))
    db.export_to(tmp_path / "a.npz")
    with SpeakerDB(tmp_path / "b.db", "model-b") as other:
        with pytest.raises(ModelMismatchError, match="holds speakers of model model-a.*re-enroll"):
            other.import_from(tmp_path / "a.npz")
        assert len(other) == 0
        (tmp_path / "junk.npz").write_bytes(b"not an archive")
        with pytest.raises(ValueError, match="junk.npz is not a voiceprint speaker export"):
            other.import_from(tmp_path / "junk.npz")
        np.savez(tmp_path / "evil.npz", payload=np.array([{"x": 1}], dtype=object))
        with pytest.raises(ValueError, match="evil.npz is not a voiceprint speaker export"):
            other.import_from(tmp_path / "evil.npz")  # object arrays would need pickle
