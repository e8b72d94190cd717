"""``voiceprint embed``: 2 processes == 1 process, resume after a lost chunk, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.test_onnx import tiny_exported
from voiceprint.cli import main
from voiceprint.data.corpus import Utterance, write_kaldi_dir
from voiceprint.embedder import load_embedder
from voiceprint.extract import Shard, embed_corpus
from voiceprint.synth import make_voice, synthesize_utterance

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Kaldi folder of 9 synthetic clips by 3 voices (1.2-2.4 s) and one of faint noise."""
    folder = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(3)
    utts = []
    for s in range(3):
        voice = make_voice(rng)
        for i in range(3):
            path = folder / f"spk{s}_{i}.wav"
            sf.write(path, synthesize_utterance(voice, float(rng.uniform(1.2, 2.4)), rng), 16000)
            utts.append(Utterance(f"spk{s}-u{i}", f"spk{s}", path))
    silent = folder / "silent.wav"
    sf.write(silent, (0.003 * rng.standard_normal(24000)).astype(np.float32), 16000)
    utts.append(Utterance("spk0-silent", "spk0", silent))
    return write_kaldi_dir(folder / "data", utts)


def _embed_cli(model: Path, data: Path, out: Path, *extra: str, env: dict | None = None):
    command = [sys.executable, "-m", "voiceprint", "embed", "--model", str(model)]
    command += ["--data", str(data), "--out", str(out), "--chunk-size", "3", *extra]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})}
    return subprocess.Popen(command, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_two_processes_give_the_bytes_of_one(corpus: Path, tmp_path: Path) -> None:
    _, onnx = tiny_exported()
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["embed", "--model", str(onnx), "--data", str(corpus), "--out", str(one),
                 "--chunk-size", "3"]) == 0  # fmt: skip
    ranks = [
        _embed_cli(onnx, corpus, two, env={"RANK": str(r), "WORLD_SIZE": "2", "LOCAL_RANK": "0"})
        for r in (0, 1)
    ]
    for proc in ranks:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    ids = (one / "utts.txt").read_text().split()
    assert ids == sorted(ids) and len(ids) == 10
    assert (two / "utts.txt").read_text() == (one / "utts.txt").read_text()
    assert (two / "embeddings.npy").read_bytes() == (one / "embeddings.npy").read_bytes()
    matrix = np.load(one / "embeddings.npy")
    assert matrix.shape == (10, 32) and matrix.dtype == np.float32
    assert np.isfinite(matrix).all() and np.ptp(matrix, axis=0).max() > 0
    info = json.loads((one / "info.json").read_text())
    assert info == json.loads((two / "info.json").read_text())
    assert info["count"] == 10 and info["dim"] == 32
    assert info["no_speech"] == ["spk0-silent"]
    # rank 1 wrote the odd chunks (1, 3), rank 0 the even ones: 4 chunks of at most 3
    assert sorted(p.name for p in (two / "parts").glob("chunk-*.npy")) == [
        f"chunk-{k:05d}.npy" for k in range(4)
    ]
    # each embedding is the model's own for that clip
    embedder = load_embedder(onnx).with_policy(refuse=False)
    wav = corpus.parent / "spk1_2.wav"
    np.testing.assert_allclose(
        matrix[ids.index("spk1-u2")], embedder.embed_file(wav), rtol=0, atol=1e-5
    )


def test_resume_recomputes_only_the_missing_chunk(corpus: Path, tmp_path: Path) -> None:
    from voiceprint.data.corpus import read_kaldi_dir

    _, onnx = tiny_exported()
    utts = read_kaldi_dir(corpus)
    embedder = load_embedder(onnx)
    calls: list[int] = []
    original = embedder.embed_files_measured

    def counting(paths, **kwargs):  # noqa: ANN001, ANN202 - a spy on the real method
        calls.append(len(paths))
        return original(paths, **kwargs)

    embedder.embed_files_measured = counting  # type: ignore[method-assign]
    out = tmp_path / "out"
    first = embed_corpus(embedder, utts, out, shard=Shard(), chunk_size=4, progress=False)
    assert calls == [4, 4, 2]
    reference = (out / "embeddings.npy").read_bytes()
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "parts").glob("chunk-*")}
    # a run killed before its last chunk and before merging
    (out / "parts" / "chunk-00002.npy").unlink()
    for name in ("embeddings.npy", "utts.txt", "info.json"):
        (out / name).unlink()
    calls.clear()
    again = embed_corpus(embedder, utts, out, shard=Shard(), chunk_size=4, progress=False)
    assert calls == [2]  # only the missing chunk
    assert again == first
    assert (out / "embeddings.npy").read_bytes() == reference
    for name in ("chunk-00000.npy", "chunk-00001.npy", "chunk-00000.json"):
        assert (out / "parts" / name).stat().st_mtime_ns == stamps[name]
    assert not list((out / "parts").glob(".*.tmp"))
    # a fully finished run re-run: nothing recomputed
    calls.clear()
    embed_corpus(embedder, utts, out, shard=Shard(), chunk_size=4, progress=False)
    assert calls == []
    # other parts in the same folder are refused, not mixed in
    with pytest.raises(ValueError, match="another run.*chunk_size"):
        embed_corpus(embedder, utts, out, shard=Shard(), chunk_size=3, progress=False)


def test_clear_errors(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, onnx = tiny_exported()
    missing = tmp_path / "nope.onnx"
    assert main(["embed", "--model", str(missing), "--data", str(corpus), "--out",
                 str(tmp_path / "a")]) == 2  # fmt: skip
    assert "nope.onnx does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "wav.scp").write_text("")
    (empty / "utt2spk").write_text("")
    assert main(["embed", "--model", str(onnx), "--data", str(empty), "--out",
                 str(tmp_path / "b")]) == 2  # fmt: skip
    assert "lists no utterances" in capsys.readouterr().err
    assert main(["embed", "--model", str(onnx), "--data", str(tmp_path / "absent"), "--out",
                 str(tmp_path / "c")]) == 2  # fmt: skip
    assert "has no wav.scp" in capsys.readouterr().err
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="not a valid rank"):
        Shard.from_env()
    with pytest.raises(TimeoutError, match="chunk-00001.*run again"):
        from voiceprint.data.corpus import read_kaldi_dir

        embed_corpus(onnx, read_kaldi_dir(corpus), tmp_path / "d", shard=Shard(0, 2),
                     chunk_size=5, progress=False, merge_timeout=0.3)  # fmt: skip
