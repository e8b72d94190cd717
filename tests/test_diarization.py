"""Speaker diarization: each stage on synthetic voices, the simulator's truth, scoring,
RTTM, naming, the CLI end to end and the service endpoint."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voiceprint.diarization import Diarizer, Segment, clustering, read_rttm, refine, write_rttm
from voiceprint.diarization.embed import embed_windows
from voiceprint.diarization.evaluate import score_file, score_sets
from voiceprint.diarization.naming import name_clusters
from voiceprint.diarization.segments import merge_adjacent, read_rttm_tree
from voiceprint.diarization.simulate import simulate_conversation
from voiceprint.diarization.source import ArraySource, FileSource
from voiceprint.diarization.speech import PAD_MS, detect_speech
from voiceprint.diarization.windows import make_windows
from voiceprint.scoring import Backend, Decision, ScoreCalibration, Scorer, trial_quality
from voiceprint.store import SpeakerDB
from voiceprint.synth import make_voice, synthesize_utterance

from .postgres import fresh_schema

SR = 16000
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "src/voiceprint/assets/default.onnx"
VOICES = ("ann", "ben", "cat", "dan")
# The shipped model's calibration is for real speech. Synthetic voices sound more alike
# to it: other voices reach LLRs of 2-6 between clusters and up to 9 against an
# enrolled voice (the voice itself: 10-11), so these tests stop AHC at LLR 3 (with the
# speech regions padded 0.2 s and the 3-window cluster floor of 2026-12-04, 3.5 and above
# split a voice; the shipped model of 2026-12-03 had merged two at 3 before) and name
# speakers at a manual threshold of 6 (both measured on these voices; the five-corpus
# model of 2026-12-05 gives a one-clip cluster of an enrolled voice an LLR of 8.0 and
# other voices -5 to -4, so the former threshold of 8 left that cluster unnamed).
SYNTH_STOP_LLR = 3.0
SYNTH_NAMING = Decision(6.0, "manual")
OLD_TURNS = {"short": (0.5, 1.5), "short_share": 0.15}


# Each test speaker is a synthetic voice heard through a microphone of its own (a spectral
# tilt in dB per octave): to the shipped model, trained on real speech, bare synthetic
# voices all sound alike (same voice 0.67, other voices 0.47 on average).
TILT_DB = {"ann": -9.0, "ben": 9.0, "cat": 0.0, "dan": 4.5}


def _clip(name: str, clip_seed: int, seconds: float) -> np.ndarray:
    index = VOICES.index(name)
    voice = make_voice(np.random.default_rng([21, index]))
    wave = synthesize_utterance(voice, seconds, np.random.default_rng([22, index, clip_seed]))
    spectrum = np.fft.rfft(wave)
    octaves = np.log2(np.maximum(np.fft.rfftfreq(len(wave), 1 / SR), 100.0) / 1000.0)
    out = np.fft.irfft(spectrum * 10 ** (TILT_DB[name] * octaves / 20), len(wave))
    return (out * (0.5 / np.max(np.abs(out)))).astype(np.float32)


@pytest.fixture(scope="module")
def pool() -> dict[str, list[np.ndarray]]:
    """Four test speakers, 8 clips of 2-4 s each (clips 0-5 for conversations)."""
    rng = np.random.default_rng(5)
    return {
        name: [_clip(name, j, float(rng.uniform(2.0, 4.0))) for j in range(8)] for name in VOICES
    }


@pytest.fixture(scope="module")
def embedder():
    pytest.importorskip("onnxruntime")
    from voiceprint.embedder import load_embedder

    return load_embedder(DEFAULT_MODEL, threads=1)


def _conversation(pool, speakers, seed=0, seconds=45.0, overlap=0.0):
    """A conversation without a noise floor: over minutes of synthetic voices in faint
    white noise, Silero VAD's recurrent state drifts and it stops finding the speech."""
    talk = {s: pool[s][:6] for s in speakers}
    return simulate_conversation(  # the turns of 2026-12-03 (the settings below are tuned on them)
        talk, speakers, seconds=seconds, overlap=overlap, seed=seed, noise_db=None, **OLD_TURNS
    )


def _der(reference, hypothesis) -> float:
    d = score_file(reference, hypothesis)["der_0.25"]
    return (d["missed detection"] + d["false alarm"] + d["confusion"]) / d["total"]


# --- stage 1: speech activity detection -------------------------------------------------


def test_speech_regions_follow_speech_across_blocks(pool) -> None:
    """Speech at known places in silence; 4 s blocks cut through the speech."""
    rng = np.random.default_rng(0)
    silence = [1.0, 1.7, 2.5]
    parts, truth, cursor = [], [], 0
    for i, gap in enumerate(silence):
        quiet = (rng.standard_normal(int(gap * SR)) * 1e-3).astype(np.float32)
        parts.append(quiet)
        cursor += quiet.size
        if i < 2:
            speech = pool["ann"][i]
            parts.append(speech)
            truth.append((cursor, cursor + speech.size))
            cursor += speech.size
    wave = np.concatenate(parts)
    regions = detect_speech(ArraySource(wave), block_seconds=4.0)
    assert regions.dtype == np.int64 and regions.shape[1] == 2
    assert np.all(np.diff(regions.ravel()) >= 0)  # sorted, not overlapping
    near = 0.4 * SR + PAD_MS * SR // 1000  # Silero's lag plus the padding on purpose
    for start, end in truth:  # every utterance is covered by regions starting and ending near it
        inside = regions[(regions[:, 1] > start) & (regions[:, 0] < end)]
        assert len(inside) >= 1
        assert abs(inside[0, 0] - start) < near and abs(inside[-1, 1] - end) < near
    speech = sum(e - s for s, e in truth)
    found = int(np.sum(regions[:, 1] - regions[:, 0]))
    assert 0.8 * speech < found < 1.2 * speech


# --- stage 2 and 3: windows and their embeddings ----------------------------------------


def test_windows_cover_regions() -> None:
    regions = np.array([[0, 8000], [16000, 16000 + 40000], [70000, 70000 + 24000]])
    win = make_windows(regions, SR, length=1.5, step=0.75, min_length=0.6)
    assert win.dtype == np.int64 and np.all(np.diff(win[:, 0]) >= 0)
    assert not np.any((win[:, 0] < 16000) & (win[:, 1] > 0) & (win[:, 0] < 8000))  # 0.5 s: none
    long = win[(win[:, 0] >= 16000) & (win[:, 1] <= 56000)]
    assert np.all(long[:, 1] - long[:, 0] == 24000)
    assert long[0, 0] == 16000 and long[-1, 1] == 56000  # the last one ends with the region
    assert np.all(np.diff(long[:, 0]) <= 12000)
    assert [70000, 94000] in win.tolist()  # exactly one window long: one window
    with pytest.raises(ValueError, match="step"):
        make_windows(regions, SR, length=1.0, step=2.0)


class _Probe:
    """A stand-in embedder that returns what it was given (first samples, length)."""

    min_samples = 400
    sample_rate = SR

    def embed_batch(self, waves):
        return np.stack([np.r_[w[:4], w[-2:], len(w)] for w in waves]).astype(np.float32)


@pytest.mark.parametrize("source_kind", ["array", "file"])
def test_streamed_windows_are_the_right_samples(tmp_path: Path, source_kind: str) -> None:
    rng = np.random.default_rng(1)
    wave = (rng.uniform(-0.5, 0.5, 20 * SR)).astype(np.float32)
    wave = np.round(wave * 32767) / 32767  # exact through 16-bit PCM
    win = make_windows(np.array([[100, 9 * SR], [10 * SR, 20 * SR - 5]]), SR)
    if source_kind == "file":
        sf.write(tmp_path / "x.wav", wave, SR, subtype="PCM_16")
        source = FileSource(tmp_path / "x.wav")
    else:
        source = ArraySource(wave)
    import voiceprint.diarization.embed as embed_module

    old = embed_module.READ_SECONDS
    embed_module.READ_SECONDS = 3.7  # blocks that cut windows in two
    try:
        got = embed_windows(_Probe(), source, win, batch_windows=5)
    finally:
        embed_module.READ_SECONDS = old
    want = _Probe().embed_batch([wave[a:b] for a, b in win])
    np.testing.assert_allclose(got, want, atol=1e-4)


# --- stage 4 and 5: clustering and refinement -------------------------------------------


def test_clustering_finds_separated_synthetic_voices(embedder, pool) -> None:
    """Windows of a conversation of three voices fall into three clusters, one per voice."""
    conv = _conversation(pool, ["ann", "ben", "cat"], seed=1, seconds=60)
    found = Diarizer(embedder).embed(conv.wave)
    centres = found.windows.mean(1) / SR
    owner = np.array(
        [next((s.speaker for s in conv.segments if s.start <= t < s.end), "") for t in centres]
    )
    keep = owner != ""
    emb, owner = found.embeddings[keep], owner[keep]

    def purity(labels: np.ndarray) -> float:
        return min(np.bincount(labels[owner == k]).max() / np.sum(owner == k) for k in set(owner))

    labels = clustering.cluster(emb, embedder.scorer, stop_llr=SYNTH_STOP_LLR)
    assert len(np.unique(labels)) == 3 and purity(labels) >= 0.85
    for method in clustering.METHODS:  # windows astride a change (padded regions) cost purity
        forced = clustering.cluster(emb, embedder.scorer, method=method, num_speakers=3)
        assert len(np.unique(forced)) == 3 and purity(forced) >= 0.8, method
        bounded = clustering.cluster(emb, embedder.scorer, method=method, max_speakers=2)
        assert len(np.unique(bounded)) <= 2


def test_clustering_summarises_many_windows_linearly() -> None:
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((3, 16)) * 4
    truth = rng.integers(0, 3, 900)
    emb = centres[truth] + rng.standard_normal((900, 16)) * 0.5
    labels = clustering.cluster(emb, None, max_points=100, stop_llr=0.5)
    assert len(np.unique(labels)) == 3
    agree = sum(np.bincount(labels[truth == k]).max() for k in range(3)) / len(truth)
    assert agree > 0.98
    assert labels[0] == 0  # labelled by first appearance
    with pytest.raises(ValueError, match="method"):
        clustering.cluster(emb, method="kmeans")


def test_the_stop_is_the_llr_of_a_trial_of_two_windows() -> None:
    """With a quality-aware calibration the AHC stop is the score whose LLR, for two
    windows of the given length, is the stop LLR; without a length, as for long trials."""
    cal = ScoreCalibration(scale=20.0, offset=-8.0, quality=(1.5, 4.0), quality_floor=-4.0)
    scorer = Scorer(Backend(calibration=cal))
    window = clustering.stop_score(scorer, -1.0, window_seconds=1.5)
    long = clustering.stop_score(scorer, -1.0)
    assert long == pytest.approx((-1.0 + 8.0) / 20.0)
    assert cal.llr(window, trial_quality(1.5, 1.5)) == pytest.approx(-1.0)
    assert window != pytest.approx(long)  # short windows' scores are read on their own terms
    assert clustering.stop_score(Scorer(Backend()), -1.0, 1.5) == -1.0  # uncalibrated


def test_window_votes_put_the_boundary_between_centres() -> None:
    # Windows of 1.5 s every 0.75 s over 6 s of speech; the first four are speaker 0.
    win = make_windows(np.array([[0, 6 * SR]]), SR)
    labels = np.array([0 if (a + b) / 2 < 3 * SR else 1 for a, b in win])
    frames = refine.frame_labels(win, labels, np.array([[0, 6 * SR]]), 7 * SR, SR)
    turns = refine.to_turns(frames)
    assert [t[2] for t in turns] == [0, 1]
    assert abs(turns[0][1] - 3.0) <= 0.4
    assert turns[-1][1] == pytest.approx(6.0) and np.all(frames[600:] == -1)
    short = np.array([0] * 50 + [1] * 10 + [0] * 50 + [-1] * 5)
    assert np.all(refine.smooth_turns(short, 25)[:110] == 0)


# --- segments: RTTM and JSON ------------------------------------------------------------


def test_rttm_round_trip(tmp_path: Path) -> None:
    segments = [
        Segment(0.5, 2.25, "alice"),
        Segment(2.0, 3.0, "unknown-1"),
        Segment(4.125, 9.875, "mary ann"),
    ]
    path = write_rttm(tmp_path / "a.rttm", segments, "meeting 1")
    text = path.read_text().splitlines()
    assert text[0].split() == [
        "SPEAKER", "meeting_1", "1", "0.500", "1.750", "<NA>", "<NA>", "alice", "<NA>", "<NA>"
    ]  # fmt: skip
    back = read_rttm(path)["meeting_1"]
    np.testing.assert_allclose(
        [(s.start, s.end) for s in back], [(s.start, s.end) for s in segments]
    )
    assert [s.speaker for s in back] == ["alice", "unknown-1", "mary_ann"]
    write_rttm(tmp_path / "sub" / "b.rttm", segments[:1], "other")
    assert set(read_rttm_tree(tmp_path)) == {"meeting_1", "other"}
    (tmp_path / "bad.rttm").write_text("SPEAKER x 1 zero 1.0 <NA> <NA> a <NA> <NA>\n")
    with pytest.raises(ValueError, match="bad.rttm:1"):
        read_rttm(tmp_path / "bad.rttm")
    joined = merge_adjacent([Segment(0, 1, "a"), Segment(1.1, 2, "a"), Segment(2, 3, "b")], 0.2)
    assert [(s.start, s.end, s.speaker) for s in joined] == [(0, 2, "a"), (2, 3, "b")]


# --- scoring ----------------------------------------------------------------------------


def test_scores_against_hand_computed_errors() -> None:
    ref = [Segment(0, 10, "A"), Segment(10, 20, "B")]
    assert _der(ref, [Segment(0, 10, "x"), Segment(10, 20, "y")]) == pytest.approx(0.0)
    half = score_file(ref, [Segment(0, 10, "x")])
    assert half["der_0"]["missed detection"] == pytest.approx(10.0)
    assert half["der_0"]["total"] == pytest.approx(20.0)
    # One label on everything: 10 s confused; with the 0.25 s collar, 0.5 s fewer scored.
    one = score_file(ref, [Segment(0, 20, "x")])
    assert one["der_0"]["confusion"] == pytest.approx(10.0)
    assert one["der_0.25"]["confusion"] == pytest.approx(9.5)
    assert one["hyp_speakers"] == 1 and one["ref_speakers"] == 2
    named = score_sets(
        {"f": ref + [Segment(5, 7, "C")]},
        {"f": [Segment(0, 10, "A"), Segment(10, 15, "B"), Segment(15, 20, "unknown-1")]},
        enrolled=["A", "B"],
    )
    # A speaks alone 8 s (2 s overlap with C), all named A; B 10 s, 5 s named B.
    assert named["naming_all"] == pytest.approx(13 / 18, abs=0.01)
    assert named["overlap_miss"] == pytest.approx(2 / 22, abs=0.01)
    assert named["count_right"] == 1.0


# --- the simulator ----------------------------------------------------------------------


def test_simulator_truth_matches_its_audio(pool, tmp_path: Path) -> None:
    conv = _conversation(pool, ["ann", "ben", "cat"], seed=4, seconds=60)
    again = _conversation(pool, ["ann", "ben", "cat"], seed=4, seconds=60)
    np.testing.assert_array_equal(conv.wave, again.wave)  # deterministic by seed
    assert not np.array_equal(conv.wave, _conversation(pool, ["ann", "ben", "cat"], 5).wave)
    assert conv.duration >= 55 and {s.speaker for s in conv.segments} == {"ann", "ben", "cat"}
    assert conv.overlap_share == 0.0
    # Where the truth says nobody speaks, the audio is (nearly) silent; speech is loud.
    active = np.zeros(len(conv.wave), dtype=bool)
    for s in conv.segments:
        active[int(s.start * SR) : int(s.end * SR)] = True
    frames = len(conv.wave) // 160
    power = (conv.wave[: frames * 160].reshape(frames, 160) ** 2).mean(1)
    act = active[: frames * 160].reshape(frames, 160).mean(1)
    quiet, loud = power[act == 0], power[act == 1]
    # (inside a clip, pauses of 0.3 s or more are not speech: some quiet frames are not)
    assert np.median(quiet) < 1e-6 and np.mean(quiet > 1e-4) < 0.3
    assert np.median(loud) > 1e-4
    wav, rttm = conv.save(tmp_path, "conv")
    back = read_rttm(rttm)["conv"]
    assert [s.speaker for s in back] == [s.speaker for s in conv.segments]
    np.testing.assert_allclose(
        [(s.start, s.end) for s in back], [(s.start, s.end) for s in conv.segments], atol=2e-3
    )
    assert sf.info(str(wav)).samplerate == SR and sf.info(str(wav)).frames == len(conv.wave)
    overlapped = _conversation(pool, ["ann", "ben"], seed=6, seconds=90, overlap=0.1)
    assert 0.06 <= overlapped.overlap_share <= 0.14
    counts = np.zeros(int(overlapped.duration * 100) + 1)
    for s in overlapped.segments:
        counts[int(s.start * 100) : int(s.end * 100)] += 1
    assert counts.max() == 2  # at most two voices at once


# --- the whole pipeline, naming, CLI, service ------------------------------------------


def test_diarizer_on_a_synthetic_conversation(embedder, pool) -> None:
    conv = _conversation(pool, ["ann", "ben", "cat"], seed=3, seconds=45)
    result = Diarizer(embedder, stop_llr=SYNTH_STOP_LLR)(conv.wave)
    assert result.num_speakers == 3
    assert _der(conv.segments, result.segments) < 0.2  # VAD false alarm on synthetic voices
    assert score_file(conv.segments, result.segments)["der_0.25"]["confusion"] < 0.05 * 45
    assert [s.speaker for s in result.speakers] == ["unknown-1", "unknown-2", "unknown-3"]
    assert all(
        b.start >= a.end - 1e-9
        for a, b in zip(result.segments[:-1], result.segments[1:], strict=True)
    )
    two = Diarizer(embedder)(conv.wave, num_speakers=2)
    assert two.num_speakers == 2
    assert Diarizer(embedder, stop_llr=SYNTH_STOP_LLR)(conv.wave, max_speakers=2).num_speakers <= 2


def test_naming_an_enrolled_voice_and_an_unknown_one(embedder, pool) -> None:
    db = SpeakerDB(":memory:", embedder.model_id, embedder.scorer)
    db.enroll("Ann", embedder.embed_batch(pool["ann"][6:]))  # clips the conversation lacks
    db.enroll("Dan", embedder.embed_batch(pool["dan"][6:]))  # enrolled, but silent here
    conv = _conversation(pool, ["ann", "ben"], seed=2, seconds=50)
    result = Diarizer(embedder, db, decision=SYNTH_NAMING)(conv.wave)
    names = {s.speaker: s for s in result.speakers}
    assert set(names) == {"Ann", "unknown-1"}
    assert names["Ann"].name == "Ann" and names["unknown-1"].name == "unknown"
    assert names["Ann"].llr > names["unknown-1"].llr
    truth = [
        Segment(s.start, s.end, {"ann": "Ann"}.get(s.speaker, s.speaker)) for s in conv.segments
    ]
    scored = score_sets({"c": truth}, {"c": result.segments}, enrolled=["Ann"])
    assert scored["naming_detected"] > 0.9 and scored["misnamed"] < 0.05
    # Two clusters given the same name are one speaker: they are joined.
    emb = np.stack([embedder.embed_batch(pool["ann"][:2]), embedder.embed_batch(pool["ben"][:2])])
    labels, named = name_clusters(emb.reshape(4, -1), np.array([0, 1, 2, 2]), db, SYNTH_NAMING)
    assert labels.tolist() == [0, 0, 1, 1] and [n.speaker for n in named] == ["Ann", "unknown-1"]


def test_cli_diarize_and_evaluate(embedder, pool, tmp_path: Path, capsys) -> None:
    from voiceprint.cli import main

    conv = _conversation(pool, ["ann", "ben", "cat"], seed=3, seconds=45)
    wav, truth = conv.save(tmp_path / "data", "talk")
    db_file = tmp_path / "speakers.db"
    with SpeakerDB(db_file, embedder.model_id, embedder.scorer) as db:
        db.enroll("ben", embedder.embed_batch(pool["ben"][6:]))
    out = tmp_path / "out"
    args = ["diarize", str(wav), "--model", str(DEFAULT_MODEL), "--db", str(db_file)]
    tuned = ["--stop-llr", str(SYNTH_STOP_LLR), "--threshold", str(SYNTH_NAMING.threshold)]
    assert main([*args, *tuned, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "3 speaker(s)" in printed and "ben" in printed
    for suffix in (".rttm", ".json", ".png"):
        assert (out / f"talk{suffix}").is_file()
    doc = json.loads((out / "talk.json").read_text())
    assert doc["num_speakers"] == 3 and {"start", "end", "speaker", "name", "score"} <= set(
        doc["segments"][0]
    )
    assert {s["name"] for s in doc["speakers"]} == {"ben", "unknown"}
    assert main(["evaluate-diarization", "--ref", str(truth), "--hyp", str(out)]) == 0
    report = capsys.readouterr().out
    assert "total (1 files)" in report and "speaker count right 100.0%" in report
    der = float(report.split("total (1 files): DER(0.25) ")[1].split("%")[0])
    assert der < 20
    assert main(["diarize", str(wav), "--num-speakers", "2", "--max-speakers", "3",
                 "--out", str(out)]) == 2  # fmt: skip
    assert main([*args[:2], "--db", str(tmp_path / "none.db"), "--out", str(out)]) == 2


def test_cli_diarize_names_from_a_postgres_store(embedder, pool, tmp_path: Path, capsys) -> None:
    """``--db postgresql://...`` opens the store as every other store command does."""
    from voiceprint.cli import main

    with fresh_schema() as url:
        conv = _conversation(pool, ["ann", "ben"], seed=3, seconds=30)
        wav, _ = conv.save(tmp_path / "data", "talk")
        with SpeakerDB(url, embedder.model_id, embedder.scorer) as db:
            db.enroll("ben", embedder.embed_batch(pool["ben"][6:]))
        tuned = ["--stop-llr", str(SYNTH_STOP_LLR), "--threshold", str(SYNTH_NAMING.threshold)]
        args = ["diarize", str(wav), "--model", str(DEFAULT_MODEL), "--db", url, *tuned]
        assert main([*args, "--out", str(tmp_path / "out"), "--no-picture"]) == 0, (
            capsys.readouterr().err
        )
    doc = json.loads((tmp_path / "out" / "talk.json").read_text())
    assert "ben" in {s["name"] for s in doc["speakers"]}


def test_cli_diarize_on_an_unreachable_store_says_so_in_one_line(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    wav = tmp_path / "talk.wav"
    sf.write(wav, _clip("ann", 0, 2.0), SR)
    url = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"
    command = ["diarize", str(wav), "--model", str(DEFAULT_MODEL), "--db", url]
    done = subprocess.run(
        [sys.executable, "-m", "voiceprint", *command, "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("voiceprint diarize: error: cannot connect to postgresql://")
    assert "127.0.0.1:1/none" in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_service_diarize(embedder, pool, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from voiceprint.service import create_app
    from voiceprint.service.access import KeyRing

    keys = KeyRing.parse("ops admin admin-secret-0123456789\napp client client-0123456789", "k")
    app = create_app(embedder, tmp_path / "s.db", keys, max_upload_mb=5, decision=SYNTH_NAMING)
    conv = _conversation(pool, ["ann", "cat"], seed=8, seconds=30)
    buffer = io.BytesIO()
    sf.write(buffer, conv.wave, SR, format="WAV", subtype="PCM_16")
    files = {"file": ("talk.wav", buffer.getvalue(), "audio/wav")}
    with TestClient(app) as client:
        assert client.post("/v1/diarize", files=files).status_code == 401
        with SpeakerDB(tmp_path / "s.db", embedder.model_id, embedder.scorer) as db:
            db.enroll("cat", embedder.embed_batch(pool["cat"][6:]))
        r = client.post(
            "/v1/diarize",
            files=files,
            data={"num_speakers": "2"},
            headers={"X-API-Key": "client-0123456789"},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["num_speakers"] == 2
        assert {s["speaker"] for s in body["speakers"]} == {"cat", "unknown-1"}
        assert body["segments"] and body["segments"][0]["end"] > body["segments"][0]["start"]
        r = client.post(
            "/v1/diarize",
            files=files,
            data={"min_speakers": "3", "max_speakers": "2"},
            headers={"X-API-Key": "client-0123456789"},
        )
        assert r.status_code == 422
        assert "/v1/diarize" in client.get("/openapi.json").json()["paths"]
