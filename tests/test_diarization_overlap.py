"""Overlapped speech and short recordings: the overlap stage, RTTM with overlapping
turns, and the speaker count of a short file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from voiceprint.diarization import Segment, clustering, read_rttm, refine, write_rttm
from voiceprint.diarization.evaluate import score_file
from voiceprint.diarization.overlap import second_speaker

SR = 16000


def test_second_speaker_around_a_change() -> None:
    """Two voices handing over at frame 50 (and silence after 80): both speakers within
    the margin either side of the change, inside their own turns only."""
    labels = np.array([0] * 50 + [1] * 30 + [-1] * 20)
    second = second_speaker(labels, 10)
    assert np.all(second[40:50] == 1) and np.all(second[50:60] == 0)
    assert np.all(second[:40] == -1) and np.all(second[60:] == -1)
    assert not np.any((second >= 0) & (second == labels))
    assert np.all(second_speaker(labels, 0) == -1)
    # A silence between two turns is no overlap.
    gap = np.array([0] * 20 + [-1] * 5 + [1] * 20)
    assert np.all(second_speaker(gap, 10) == -1)


def test_overlap_stage_on_a_two_voice_mixture() -> None:
    """Truth: A 0-3 s, B 2.5-5 s (0.5 s of both). Frame labels as a single-speaker output
    gives them (change at 2.75 s); the second speaker recovers the overlap."""
    truth = [Segment(0.0, 3.0, "A"), Segment(2.5, 5.0, "B")]
    labels = np.array([0] * 275 + [1] * 225)
    single = [Segment(a, b, "AB"[k]) for a, b, k in refine.to_turns(labels)]
    turns = refine.to_turns(labels) + refine.to_turns(second_speaker(labels, 25))
    both = [Segment(a, b, "AB"[k]) for a, b, k in refine.merge_turns(turns)]
    assert [(s.start, s.end, s.speaker) for s in both] == [(0.0, 3.0, "A"), (2.5, 5.0, "B")]
    miss_single = score_file(truth, single)["der_0"]["missed detection"]
    miss_both = score_file(truth, both)["der_0"]["missed detection"]
    assert miss_single > 0.4 and miss_both < 1e-6


def test_merge_turns_joins_a_speakers_touching_turns() -> None:
    turns = [(0.0, 1.0, 0), (1.0, 2.0, 0), (0.5, 1.5, 1), (3.0, 4.0, 0)]
    assert refine.merge_turns(turns) == [(0.0, 2.0, 0), (0.5, 1.5, 1), (3.0, 4.0, 0)]


def test_rttm_round_trip_with_overlapping_turns(tmp_path: Path) -> None:
    segments = [
        Segment(0.0, 3.0, "A"),
        Segment(2.5, 5.0, "B"),
        Segment(2.75, 3.25, "C"),  # three voices at once
        Segment(6.0, 7.5, "A"),
    ]
    path = write_rttm(tmp_path / "talk.rttm", segments, "talk")
    back = read_rttm(path)["talk"]
    assert [(s.start, s.end, s.speaker) for s in back] == [
        (s.start, s.end, s.speaker) for s in segments
    ]
    scored = score_file(segments, back)
    assert scored["der_0"]["total"] > 0 and scored["der_0"]["missed detection"] == 0
    assert abs(scored["overlap"] - 0.75) < 0.02  # 2.5-3.25 s: two or three voices


def test_count_on_a_short_recording() -> None:
    """A 30-s recording's window embeddings: a main voice with 30 windows and two minor
    ones with 4 windows each (3 s of speech): all three are counted (the share rule alone
    folded the minor ones), while a single stray window is folded."""
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((3, 32))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    counts = [30, 4, 4]
    emb = np.concatenate(
        [
            c + 0.25 * rng.standard_normal((n, 32)) / np.sqrt(32)
            for c, n in zip(centres, counts, strict=True)
        ]
    )
    stray = rng.standard_normal((1, 32))
    labels = clustering.cluster(emb, stop_llr=0.5)
    assert len(np.unique(labels)) == 3
    with_stray = clustering.cluster(np.concatenate([emb, stray]), stop_llr=0.5)
    assert len(np.unique(with_stray)) == 3
    share_only = clustering.cluster(emb, stop_llr=0.5, min_cluster_share=0.12)
    assert len(np.unique(share_only)) == 1  # 12% of 38 windows: 5, so both folded


def _pool() -> dict[str, list[np.ndarray]]:
    from voiceprint.synth import make_voice, synthesize_utterance

    out = {}
    for i, name in enumerate(("ann", "ben")):
        voice = make_voice(np.random.default_rng([31, i]))
        out[name] = [
            (0.5 * synthesize_utterance(voice, 3.0, np.random.default_rng([32, i, j]))).astype(
                np.float32
            )
            for j in range(5)
        ]
    return out


def test_simulated_room_truth_against_its_audio() -> None:
    """A room conversation: deterministic, short turns as in meetings, the overlap asked
    for, and reverberation applied (energy rings on after each turn's dry end)."""
    from voiceprint.diarization.simulate import simulate_conversation

    pool = _pool()
    kw = {"seconds": 60.0, "overlap": 0.1, "seed": 3, "noise_db": None}
    room = simulate_conversation(pool, ["ann", "ben"], room=True, **kw)
    again = simulate_conversation(pool, ["ann", "ben"], room=True, **kw)
    dry = simulate_conversation(pool, ["ann", "ben"], **kw)
    np.testing.assert_array_equal(room.wave, again.wave)
    assert [(s.start, s.end) for s in room.segments] == [(s.start, s.end) for s in dry.segments]
    assert 0.05 <= room.overlap_share <= 0.15
    counts = np.zeros(int(room.duration * 100) + 1)
    for s in room.segments:
        counts[int(s.start * 100) : int(s.end * 100)] += 1
    assert counts.max() == 2
    lengths = np.array([s.duration for s in room.segments])
    assert np.mean(lengths < 2.0) >= 0.2 and np.any((lengths >= 0.1) & (lengths <= 1.0))
    # Reverberation: 20-120 ms after a turn ends (and nobody else speaks), the room still
    # rings; the dry mix has fallen silent there.
    ring_room, ring_dry = [], []
    for s in room.segments:
        a, b = int((s.end + 0.02) * SR), int((s.end + 0.12) * SR)
        if b < len(room.wave) and counts[int(s.end * 100) + 2 : int(s.end * 100) + 12].max() == 0:
            level = np.abs(room.wave[int((s.end - 0.3) * SR) : int(s.end * SR)]).mean()
            ring_room.append(np.abs(room.wave[a:b]).mean() / max(level, 1e-9))
            ring_dry.append(np.abs(dry.wave[a:b]).mean())
    assert ring_room and np.median(ring_room) > 0.05 and np.median(ring_dry) < 1e-4


def test_overlap_runs_and_nearest_other_speaker() -> None:
    """Frames flagged as overlapped get the nearest other speaker in time (not their own),
    runs shorter than the minimum are dropped, and a lone speaker gets no second one."""
    from voiceprint.diarization.overlap import nearest_other, runs_at_least

    mask = np.zeros(100, dtype=bool)
    mask[10:12] = True  # 2 frames: too short
    mask[40:60] = True
    kept = runs_at_least(mask, 5)
    assert not kept[10:12].any() and kept[40:60].all() and kept.sum() == 20
    labels = np.array([0] * 50 + [1] * 30 + [-1] * 10 + [2] * 10)
    second = nearest_other(labels, kept, max_frames=100)
    assert np.all(second[40:50] == 1) and np.all(second[50:60] == 0)
    assert np.all(second[~kept] == -1)
    flagged = np.zeros(100, dtype=bool)
    flagged[70:80] = True  # speaker 1's frames: speaker 0 ends 20 frames before, 2 at 90
    assert np.all(nearest_other(labels, flagged, 100)[70:80] == 2)
    assert np.all(nearest_other(labels, flagged, 5)[70:80] == -1)  # nobody near enough
    assert np.all(nearest_other(np.zeros(50, dtype=np.int64), np.ones(50, bool), 100) == -1)


def test_shipped_overlap_detector_loads_and_runs_per_frame() -> None:
    """The packaged detector: weights load without running code, one probability per
    10 ms frame of a source, in [0, 1], the same when the source is read in blocks."""
    from voiceprint.diarization import overlap
    from voiceprint.diarization.source import open_source

    detector = overlap.load_detector()
    assert sum(p.numel() for p in detector.net.parameters()) < 50_000
    wave = (0.1 * np.random.default_rng(0).standard_normal(3 * SR)).astype(np.float32)
    prob = detector(open_source(wave, SR), 300)
    assert prob.shape == (300,) and np.all((prob >= 0) & (prob <= 1))
    info = detector.info
    assert all("train" in corpus for corpus in info["trained_on"])


def test_overlap_stage_gives_a_two_voice_mixture_both_speakers() -> None:
    """A two-voice mixture (A 0-3 s, B 2.5-5 s) as the pipeline's last stage sees it:
    single-speaker frame labels, and a detector flagging 2.4-3.1 s. The RTTM written
    holds both speakers at once there, and missed speech falls."""
    from voiceprint.diarization import Diarizer
    from voiceprint.diarization.pipeline import WindowEmbeddings

    class Flat:  # an embedder-like stub: the scorer and decision naming needs
        from voiceprint.scoring import Scorer

        scorer = Scorer()
        decision = None

    truth = [Segment(0.0, 3.0, "A"), Segment(2.5, 5.0, "B")]
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 16))
    b -= (a @ b) / (a @ a) * a  # two voices the uncalibrated cosine keeps apart
    emb = np.stack([a] * 3 + [b] * 3).astype(np.float32)
    wins = np.array([[0, 24000], [8000, 32000], [16000, 40000], [40000, 64000],
                     [48000, 72000], [56000, 80000]])  # fmt: skip
    prob = np.zeros(500, dtype=np.float32)
    prob[240:310] = 0.9
    found = WindowEmbeddings("mix", SR, 5 * SR, np.array([[0, 5 * SR]]), wins, emb, {}, prob)
    diarizer = Diarizer(Flat(), stop_llr=0.5, overlap_model=None)  # detector output given
    with_overlap = diarizer.label(found)
    found.overlap = None
    single = diarizer.label(found)
    both = [s for s in with_overlap.segments if s.start < 2.8 < s.end]
    assert len({s.speaker for s in both}) == 2
    miss = [
        score_file(truth, r.segments)["der_0"]["missed detection"] for r in (single, with_overlap)
    ]
    assert miss[1] < miss[0] - 0.4


def test_overlap_detector_with_a_gru_saves_and_loads(tmp_path: Path) -> None:
    """A detector with a bidirectional GRU on top (``gru`` > 0) written by the training
    recipe's ``save`` loads back with its size from the header and gives the same
    probabilities as the network it was saved from; one per frame, in [0, 1]."""
    import torch

    from voiceprint.diarization import overlap, overlap_train

    torch.manual_seed(0)
    net = overlap.build_net(64, 8, (2,), gru=6)
    path = overlap_train.save(net, tmp_path / "ov.npz", {"trained_on": ["synthetic"]})
    detector = overlap.OverlapDetector(path)
    assert detector.info["gru"] == 6 and detector.net.gru is not None
    wave = (0.1 * np.random.default_rng(0).standard_normal(2 * SR)).astype(np.float32)
    logmel = detector.logmel(wave)
    prob = detector.frame_probabilities(logmel)
    with torch.no_grad():
        direct = torch.sigmoid(net.eval()(torch.from_numpy(overlap.normalise(logmel))[None]))[0]
    assert prob.shape == (len(logmel),) and np.all((prob >= 0) & (prob <= 1))
    np.testing.assert_allclose(prob, direct.numpy(), atol=1e-6)
