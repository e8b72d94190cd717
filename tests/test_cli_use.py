"""The 'use a model' commands through voiceprint.cli.main: enroll ... export, and errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from voiceprint.audio import save
from voiceprint.cli import common, main, store_cmds
from voiceprint.embedder import Embedder, OnnxEmbedder
from voiceprint.errors import VoiceprintError
from voiceprint.scoring import Decision
from voiceprint.store import SpeakerDB, UnknownSpeakerError
from voiceprint.synth import make_voice, synthesize_utterance

from .test_onnx import make_tiny_checkpoint

NONTARGET = np.linspace(-0.4, 0.6, 500)  # calibration scores stored with the model


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two synthetic voices: a1..a3 by one speaker, b1 by another."""
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(11)
    voices = {"a": make_voice(rng), "b": make_voice(rng)}
    out = {}
    for name in ("a1", "a2", "a3", "b1"):
        out[name] = folder / f"{name}.wav"
        save(out[name], synthesize_utterance(voices[name[0]], 1.5, rng))
    return out


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    decision = Decision.from_scores(0.5, NONTARGET)
    return make_tiny_checkpoint(folder / "tiny_checkpoint.pth", decision=decision)


@pytest.fixture
def run(model: Path, tmp_path: Path, monkeypatch, capsys):
    """main([...]) with the tiny model and a fresh store; returns (exit code, stdout, stderr)."""
    monkeypatch.setenv("VOICEPRINT_DB", str(tmp_path / "speakers.db"))
    monkeypatch.delenv("VOICEPRINT_MODEL", raising=False)

    def invoke(*argv: str, with_model: bool = True) -> tuple[int, str, str]:
        args = list(argv)
        if with_model:
            args += ["--model", str(model)]
        code = main(args)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke


def _score(line: str) -> float:
    return float(re.search(r"score (-?\d+\.\d+)", line).group(1))


def test_enroll_verify_identify_compare_speakers(run, files, model, tmp_path) -> None:
    code, out, _ = run("enroll", "alice", str(files["a1"]), str(files["a2"]))
    assert code == 0 and out.startswith("enrolled alice: 2 file(s), 2 embedding(s) in total")
    assert run("enroll", "bob", str(files["b1"]))[0] == 0
    assert run("enroll", "alice", str(files["a3"]))[1].startswith("enrolled alice: 1 file(s), 3")

    # The printed score is the store's score; the stored EER threshold decides.
    embedder = Embedder.from_checkpoint(model)
    with SpeakerDB(tmp_path / "speakers.db", embedder.model_id) as db:
        expected = db.verify("alice", embedder.embed_file(files["b1"])).score
    code, out, _ = run("verify", "alice", str(files["b1"]))
    assert out.startswith("alice  score ")
    assert _score(out) == pytest.approx(expected, abs=1e-3)
    assert "threshold 0.500" in out
    assert (code, out.split()[-1]) == ((0, "ACCEPT") if expected >= 0.5 else (1, "REJECT"))
    code, out, _ = run("verify", "alice", str(files["b1"]), "--threshold", "-1")
    assert code == 0 and out.rstrip().endswith("threshold -1.000  ACCEPT")
    code, out, _ = run("verify", "alice", str(files["b1"]), "--threshold", "1.01")
    assert code == 1 and out.rstrip().endswith("REJECT")
    # --far picks the threshold from the calibration stored with the model.
    at_far = Decision.from_scores(0.5, NONTARGET).at_far(0.05).threshold
    assert f"threshold {at_far:.3f}" in run("verify", "alice", str(files["b1"]), "--far", "0.05")[1]

    code, out, _ = run("identify", str(files["b1"]), "--top", "2", "--threshold", "0.99")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 3
    assert lines[0].split()[:2] == ["1", "bob"] and lines[0].endswith("ACCEPT")
    assert _score(lines[0]) == pytest.approx(1.0, abs=1e-3)
    assert lines[1].split()[:2] == ["2", "alice"] and lines[1].endswith("REJECT")
    assert lines[2] == "identified: bob (among 2 enrolled speaker(s))"

    code, out, _ = run("compare", str(files["a1"]), str(files["a1"]))
    assert code == 0 and "score 1.000  threshold 0.500  ACCEPT" in out

    code, out, _ = run("speakers")
    assert code == 0
    assert out.splitlines()[1:] == [
        f"alice           3  {embedder.model_id}",
        f"bob             1  {embedder.model_id}",
    ]
    backup = tmp_path / "backup.npz"
    code, out, _ = run("speakers", "--export", str(backup))
    assert code == 0 and out.startswith("exported 2 speaker(s), 4 embedding(s)")
    code, out, _ = run("speakers", "--import", str(backup), "--db", str(tmp_path / "new.db"))
    assert code == 0 and out.startswith("imported 2 speaker(s), 4 embedding(s)")
    code, _, err = run("speakers", "--import", str(backup))
    assert code == 2 and "already enrolled" in err
    code, out, _ = run("speakers", "--remove", "bob")
    assert code == 0 and out.startswith("removed bob (1 embedding(s))")
    assert "bob" not in run("speakers")[1]


def test_export_then_use_the_onnx_model(run, files, model, tmp_path) -> None:
    # The evaluation beside the checkpoint travels into the ONNX metadata.
    model_id = Embedder.from_checkpoint(model).model_id
    results = {"model_id": model_id, "eer": 0.0625, "min_dcf": 0.3, "n_target": 40}
    (model.parent / "results.json").write_text(json.dumps(results))
    out_path = tmp_path / "model.onnx"
    code, out, _ = run(
        "export", "--exp", str(model.parent), "--out", str(out_path), with_model=False
    )
    assert code == 0 and out.startswith(f"wrote {out_path}")
    assert "threshold 0.500, EER 6.25%; onnxruntime matches torch" in out
    exported = OnnxEmbedder(out_path)
    assert exported.evaluation == {"eer": 0.0625, "min_dcf": 0.3, "n_target": 40}
    assert exported.model_id == model_id
    torch_line = run("compare", str(files["a1"]), str(files["b1"]))[1]
    code, onnx_line, _ = run(
        "compare", str(files["a1"]), str(files["b1"]), "--model", str(out_path), with_model=False
    )
    assert abs(_score(torch_line) - _score(onnx_line)) <= 0.0011  # same model, printed to 3 dp
    # Same model id: speakers enrolled with the checkpoint are usable with the ONNX file.
    run("enroll", "alice", str(files["a1"]))
    code, out, _ = run(
        "verify", "alice", str(files["a1"]), "--model", str(out_path), with_model=False
    )
    assert code == 0 and _score(out) == pytest.approx(1.0, abs=1e-3)


def test_errors_are_one_clear_line(run, files, model, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(common, "default_model", lambda: None)
    code, _, err = run("compare", str(files["a1"]), str(files["a2"]), with_model=False)
    assert code == 2 and "no model given" in err and "--model" in err

    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    code, _, err = run("verify", "alice", str(bad))
    assert code == 2 and f"{bad}: cannot decode as audio" in err

    code, _, err = run("verify", "nobody", str(files["a1"]))
    assert code == 2 and "'nobody' is not enrolled" in err

    # A speaker enrolled with one model cannot be verified with another.
    run("enroll", "alice", str(files["a1"]))
    other = make_tiny_checkpoint(tmp_path / "other.pth", seed=1)
    code, out, err = run(
        "verify", "alice", str(files["a2"]), "--model", str(other), with_model=False
    )
    assert code == 2 and "enrolled with model" in err and "cannot be compared" in err

    # No threshold stored and none given: the score is shown, the exit code says error.
    code, out, err = run(
        "compare", str(files["a1"]), str(files["a2"]), "--model", str(other), with_model=False
    )
    assert code == 2 and "threshold none" in out and "pass --threshold" in err
    # --far on a model without calibration falls back to the stored EER threshold.
    plain = make_tiny_checkpoint(tmp_path / "plain.pth", decision=Decision(0.25))
    code, out, err = run(
        "compare",
        str(files["a1"]),
        str(files["a1"]),
        "--model",
        str(plain),
        "--far",
        "0.01",
        with_model=False,
    )
    assert code == 0 and "threshold 0.250  ACCEPT" in out and "no false-accept calibration" in err
    code, _, err = run("verify", "alice", str(files["a1"]), "--far", "1e-6")
    assert code == 2 and "outside the calibrated range" in err


def _failing(error: BaseException) -> Callable[[object], int]:
    """A command that raises ``error``."""

    def command(args: object) -> int:
        raise error

    return command


@pytest.mark.parametrize("bug", [TypeError("unsupported operand"), KeyError("row")])
def test_a_bug_in_a_command_raises_instead_of_a_one_line_error(bug, monkeypatch) -> None:
    """A TypeError or a KeyError of the code's own is a bug: main() lets it through, so
    its traceback shows, rather than turning it into exit code 2 and one line."""
    monkeypatch.setattr(store_cmds, "cmd_speakers", _failing(bug))
    with pytest.raises(type(bug)) as raised:
        main(["speakers"])
    assert raised.value is bug


def test_a_bug_prints_its_traceback(tmp_path) -> None:
    code = (
        "import sys\n"
        "from voiceprint.cli import main, store_cmds\n"
        "def bug(args):\n    return len(None)\n"
        "store_cmds.cmd_speakers = bug\n"
        "sys.exit(main(['speakers']))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 1 and "error:" not in out.stderr  # not the one-line form
    assert "Traceback (most recent call last)" in out.stderr and "TypeError" in out.stderr


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (VoiceprintError("speaker store is damaged"), "speaker store is damaged"),
        (UnknownSpeakerError("speaker 'x' is not enrolled"), "speaker 'x' is not enrolled"),
        (PermissionError(13, "Permission denied", "out.npz"), "Permission denied: 'out.npz'"),
    ],
)
def test_a_user_error_is_one_line_and_exit_code_2(error, line, monkeypatch, capsys) -> None:
    monkeypatch.setattr(store_cmds, "cmd_speakers", _failing(error))
    assert main(["speakers"]) == 2
    err = capsys.readouterr().err
    assert err.endswith(f"{line}\n") and err.startswith("voiceprint speakers: error: ")
    assert err.count("\n") == 1


def test_default_store_location(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("VOICEPRINT_DB", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert common.db_path(None) == tmp_path / ".voiceprint" / "speakers.db"
    monkeypatch.setenv("VOICEPRINT_DB", str(tmp_path / "x.db"))
    assert common.db_path(None) == tmp_path / "x.db"
    assert common.db_path("y.db") == Path("y.db")


def test_speech_is_found_trimmed_and_required(run, files, model, tmp_path) -> None:
    """Every inference path checks for speech: silence is refused naming the file; a model
    evaluated with trimming (vad) embeds only the speech of a padded clip."""
    from voiceprint.audio import load

    embedder = Embedder.from_checkpoint(model)
    wave = load(files["a1"])
    silence = np.zeros(24_000, dtype=np.float32)
    padded = np.concatenate([silence, wave, silence])
    assert len(embedder.speech(padded, "padded")) == len(padded)  # checked, not trimmed
    alone, whole = embedder.embed(wave, 16_000), embedder.embed(padded, 16_000)
    trimming = embedder.with_policy(trim=True)  # as a model evaluated with vad
    kept = trimming.speech(padded, "padded")
    assert abs(len(kept) - len(wave)) < 0.5 * 16_000
    trimmed = trimming.embed(padded, 16_000)
    assert len(embedder.speech(padded, "padded")) == len(padded)  # the original: untouched

    def cosine(x: np.ndarray, y: np.ndarray) -> float:
        return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))

    assert cosine(alone, trimmed) > cosine(alone, whole)  # the silence no longer counts
    quiet = tmp_path / "quiet.wav"
    noise = 0.01 * np.random.default_rng(0).standard_normal(32_000)  # -40 dBFS hiss, no voice
    save(quiet, noise.astype(np.float32))
    run("enroll", "alice", str(files["a1"]))
    code, _, err = run("verify", "alice", str(quiet))
    assert code == 2 and f"{quiet}: no speech found" in err
