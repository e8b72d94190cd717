"""Corpora as distributed: AISHELL-1's archives, downloads, VoxCeleb1/2, CN-Celeb.

Every tree here copies the distributed layout exactly, in miniature, built in tmp_path.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sys
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voiceprint import audio
from voiceprint.cli import main
from voiceprint.config import load_config
from voiceprint.data import aishell, fetch, official
from voiceprint.data.corpus import CorpusError, read_kaldi_dir, scan_split
from voiceprint.data.trials import read_trials
from voiceprint.experiment import Experiment
from voiceprint.synth import make_voice, synthesize_utterance

SR = 16000


def wav_bytes(seconds: float = 0.2, freq: float = 220.0, fmt: str = "WAV") -> bytes:
    t = np.arange(int(seconds * SR)) / SR
    buffer = io.BytesIO()
    sf.write(buffer, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), SR, format=fmt)
    return buffer.getvalue()


def add(tar: tarfile.TarFile, name: str, data: bytes | None = None) -> None:
    info = tarfile.TarInfo(name)
    if data is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
    else:
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))


def targz(entries: list[tuple[str, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        for name, data in entries:
            add(tar, name, data)
    return buffer.getvalue()


def speaker_archive(spk: str, split: str, n_utts: int, clip: bytes) -> bytes:
    """``<spk>.tar.gz`` as in data_aishell/wav/: ``<split>/<spk>/BAC009<spk>W<nnnn>.wav``."""
    entries: list[tuple[str, bytes | None]] = [(split, None), (f"{split}/{spk}", None)]
    entries += [(f"{split}/{spk}/BAC009{spk}W{121 + i:04d}.wav", clip) for i in range(n_utts)]
    return targz(entries)


def make_aishell(
    folder: Path,
    splits: dict[str, tuple[int, int]],
    *,
    unlisted_tar: str | None = None,
    missing_tar: str | None = None,
    foreign: str | None = None,
) -> dict[str, list[str]]:
    """Write data_aishell.tgz + resource_aishell.tgz as openslr ships them.

    ``splits``: split -> (speakers, utterances each). Returns split -> speaker ids.
    ``missing_tar``: a speaker listed in speaker.info whose inner archive is left out;
    ``foreign``: a speaker whose inner archive holds another speaker's folder.
    """
    folder.mkdir(parents=True, exist_ok=True)
    clip = wav_bytes()
    entries: list[tuple[str, bytes | None]] = [
        ("data_aishell", None),
        ("data_aishell/wav", None),
        ("data_aishell/transcript", None),
    ]
    ids: dict[str, list[str]] = {}
    number = 2
    transcript = []
    for split, (n_spk, n_utts) in splits.items():
        ids[split] = []
        for _ in range(n_spk):
            spk = f"S{number:04d}"
            number += 1
            ids[split].append(spk)
            transcript += [
                f"BAC009{spk}W{121 + i:04d} 而 对 楼市 成交 抑制 作用 最 大 的" for i in range(2)
            ]
            if spk == missing_tar:
                continue
            inner = speaker_archive("S9999" if spk == foreign else spk, split, n_utts, clip)
            entries.append((f"data_aishell/wav/{spk}.tar.gz", inner))
    if unlisted_tar:
        entries.append((f"data_aishell/wav/{unlisted_tar}.tar.gz", b"not a tar"))
    text = "\n".join(transcript) + "\n"
    entries.append(("data_aishell/transcript/aishell_transcript_v0.8.txt", text.encode()))
    (folder / "data_aishell.tgz").write_bytes(targz(entries))
    info = "".join(
        f"{spk[1:]} {'F' if i % 2 else 'M'}\n"
        for i, spk in enumerate(s for split in ids.values() for s in split)
    )
    resource = targz(
        [
            ("resource_aishell", None),
            ("resource_aishell/lexicon.txt", "而 er2\n楼市 l ou2 sh ix4\n".encode()),
            ("resource_aishell/speaker.info", info.encode()),
        ]
    )
    (folder / "resource_aishell.tgz").write_bytes(resource)
    return ids


# -- AISHELL-1 as distributed -> prepare -> the lab protocol ---------------------------------


def test_distributed_aishell_prepares_the_lab_protocol(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The acceptance line: the archives exactly as distributed, `prepare`, 300x10 / 20x10."""
    downloads = tmp_path / "downloads"
    ids = make_aishell(downloads, {"train": (302, 10), "dev": (2, 3), "test": (20, 11)})
    exp_dir = tmp_path / "exp"
    assert main(["prepare", "--root", str(downloads), f"exp_dir={exp_dir}", "--quiet"]) == 0
    wav = downloads / "data_aishell" / "wav"
    assert not list(wav.glob("*.tar.gz"))  # inner archives unpacked and removed
    assert sorted(p.name for p in (wav / "test").iterdir()) == ids["test"]
    assert (wav / "train" / "S0002" / "BAC009S0002W0121.wav").is_file()
    assert (downloads / "resource_aishell" / "speaker.info").is_file()

    out = Experiment(load_config(None, [f"exp_dir={exp_dir}"])).data_dir
    train, test = read_kaldi_dir(out / "train"), read_kaldi_dir(out / "test")
    train_speakers = {u.speaker for u in train}
    assert len(train_speakers) == 300 and len(train) == 3000  # the lab: 300 x 10
    assert train_speakers <= set(ids["train"])
    assert {u.speaker for u in test} == set(ids["test"]) and len(test) == 200  # 20 x 10
    assert len(read_trials(out / "test" / "trials_pairs")) == 19_900
    assert len(read_trials(out / "test" / "trials_enroll")) == 20 * 9 * 20
    assert all(Path(u.path).is_file() and u.utt.startswith("BAC009") for u in train + test)
    assert "train:" in capsys.readouterr().out

    # The unpacked tree is the AISHELL layout the reader takes, from any of its roots.
    for root in (downloads, downloads / "data_aishell", wav):
        assert len(scan_split(root, "dev")) == 6
    assert not aishell.needs_extraction(downloads)  # a second prepare does not unpack again


def test_speaker_info_maps_ids_and_gender(tmp_path: Path) -> None:
    (tmp_path / "speaker.info").write_text("0002 F\n0003 M\n\nS0004 f\n")
    assert aishell.read_speaker_info(tmp_path / "speaker.info") == {
        "S0002": "F",
        "S0003": "M",
        "S0004": "F",
    }
    (tmp_path / "bad.info").write_text("0002 F\n0003\n")
    with pytest.raises(CorpusError, match="bad.info:2"):
        aishell.read_speaker_info(tmp_path / "bad.info")


# -- what is missing, named -------------------------------------------------------------------


def small_aishell(folder: Path, **kwargs: str) -> dict[str, list[str]]:
    return make_aishell(folder, {"train": (3, 2), "dev": (1, 2), "test": (2, 2)}, **kwargs)


def test_missing_resource_archive_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small_aishell(tmp_path)
    (tmp_path / "resource_aishell.tgz").unlink()
    with pytest.raises(CorpusError, match=r"needs resource_aishell\.tgz .*missing"):
        aishell.extract(tmp_path, progress=False)
    assert main(["prepare", "--root", str(tmp_path), f"exp_dir={tmp_path / 'exp'}"]) == 2
    assert "resource_aishell.tgz" in capsys.readouterr().err


def test_outer_archive_unpacked_by_hand_still_needs_resource(tmp_path: Path) -> None:
    """data_aishell/ unpacked by hand (its inner archives still there), no resource_aishell."""
    (tmp_path / "data_aishell" / "wav").mkdir(parents=True)
    (tmp_path / "data_aishell" / "wav" / "S0002.tar.gz").write_bytes(b"")
    assert aishell.needs_extraction(tmp_path / "data_aishell")
    with pytest.raises(CorpusError, match=r"needs resource_aishell\.tgz \(or an unpacked"):
        aishell.extract(tmp_path / "data_aishell", progress=False)


def test_speaker_without_inner_archive_is_named(tmp_path: Path) -> None:
    small_aishell(tmp_path, missing_tar="S0003")
    with pytest.raises(CorpusError, match=r"1 speaker\(s\) with no audio.*wav/S0003\.tar\.gz"):
        aishell.extract(tmp_path, progress=False)
    assert not (tmp_path / "data_aishell" / aishell.DONE).exists()


def test_inner_archive_of_another_speaker_is_refused(tmp_path: Path) -> None:
    small_aishell(tmp_path, foreign="S0004")
    with pytest.raises(
        CorpusError,
        match=r"S0004\.tar\.gz: member 'train/S9999/.*S0004 must hold that speaker only",
    ):
        aishell.extract(tmp_path, progress=False)


def test_broken_inner_archive_is_named(tmp_path: Path) -> None:
    small_aishell(tmp_path, unlisted_tar="S0100")
    with pytest.raises(CorpusError, match=r"S0100\.tar\.gz: not a readable tar archive"):
        aishell.extract(tmp_path, progress=False)


def test_truncated_outer_archive_is_named(tmp_path: Path) -> None:
    small_aishell(tmp_path)
    whole = (tmp_path / "data_aishell.tgz").read_bytes()
    (tmp_path / "data_aishell.tgz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CorpusError, match=r"data_aishell\.tgz: not a readable tar.*truncated"):
        aishell.extract(tmp_path, progress=False)
    assert not (tmp_path / "data_aishell").exists()  # nothing half-unpacked in place


def test_archive_without_transcript_is_not_the_distributed_one(tmp_path: Path) -> None:
    (tmp_path / "data_aishell.tgz").write_bytes(
        targz([("data_aishell", None), ("data_aishell/wav/S0002.tar.gz", b"x")])
    )
    small = make_aishell(tmp_path / "other", {"train": (1, 1)})
    assert small
    (tmp_path / "other" / "resource_aishell.tgz").replace(tmp_path / "resource_aishell.tgz")
    with pytest.raises(CorpusError, match="holds no data_aishell/transcript/aishell_transcript"):
        aishell.extract(tmp_path, progress=False)


@pytest.mark.parametrize(
    ("name", "why"),
    [("../evil.wav", "climbs out"), ("/tmp/evil.wav", "absolute path")],
)
def test_unsafe_members_are_refused_before_writing(tmp_path: Path, name: str, why: str) -> None:
    archive = tmp_path / "bad.tgz"
    archive.write_bytes(targz([("data_aishell", None), (name, b"boom")]))
    with pytest.raises(fetch.UnsafeArchiveError, match=why):
        fetch.safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "evil.wav").exists() and not (tmp_path / "out").exists()


def test_links_out_of_the_archive_are_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        link = tarfile.TarInfo("data_aishell/passwd")
        link.type, link.linkname = tarfile.SYMTYPE, "../../etc/passwd"
        tar.addfile(link)
    (tmp_path / "bad.tgz").write_bytes(buffer.getvalue())
    with pytest.raises(fetch.UnsafeArchiveError, match="outside the archive"):
        fetch.safe_extract(tmp_path / "bad.tgz", tmp_path / "out")


# -- download: resume, checksum -----------------------------------------------------------------


class RangeServer:
    """A 127.0.0.1 HTTP server for one payload, honouring Range; it can stop mid-body."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.ranges: list[str | None] = []
        self.cut_after: int | None = None  # send this many body bytes, then drop the line
        self.honour_range = True
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                asked = self.headers.get("Range")
                server.ranges.append(asked)
                asked = asked if server.honour_range else None
                start = int(asked.split("=")[1].split("-")[0]) if asked else 0
                body = server.payload[start:]
                self.send_response(206 if asked else 200)
                if asked:
                    total = len(server.payload)
                    self.send_header("Content-Range", f"bytes {start}-{total - 1}/{total}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None:
                    body, server.cut_after = body[: server.cut_after], None
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/data_aishell.tgz"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served() -> Iterator[RangeServer]:
    payload = np.random.default_rng(0).bytes(300_000)
    server = RangeServer(payload)
    yield server
    server.close()


def test_download_resumes_after_an_interruption(served: RangeServer, tmp_path: Path) -> None:
    sha = hashlib.sha256(served.payload).hexdigest()
    dest = tmp_path / "data_aishell.tgz"
    served.cut_after = 120_000
    with pytest.raises(fetch.DownloadError, match="run again to resume"):
        fetch.download(served.url, dest, checksum=f"sha256:{sha}", progress=False)
    part = tmp_path / "data_aishell.tgz.part"
    assert part.stat().st_size == 120_000 and not dest.exists()
    fetch.download(served.url, dest, checksum=f"sha256:{sha}", progress=False)
    assert served.ranges == [None, "bytes=120000-"]
    assert dest.read_bytes() == served.payload and not part.exists()
    fetch.download(served.url, dest, checksum=sha, progress=False)  # present: verified, kept
    assert len(served.ranges) == 2


def test_download_restarts_when_the_server_ignores_ranges(
    served: RangeServer, tmp_path: Path
) -> None:
    served.honour_range = False
    dest = tmp_path / "data_aishell.tgz"
    (tmp_path / "data_aishell.tgz.part").write_bytes(b"stale bytes from another file")
    md5 = hashlib.md5(served.payload).hexdigest()
    fetch.download(served.url, dest, checksum=md5, progress=False)
    assert served.ranges[0] is not None and dest.read_bytes() == served.payload


def test_download_checksum_mismatch_is_an_error(served: RangeServer, tmp_path: Path) -> None:
    md5 = hashlib.md5(served.payload).hexdigest()
    wrong = "0" * 32
    dest = tmp_path / "data_aishell.tgz"
    with pytest.raises(fetch.ChecksumError, match=f"md5 is {md5}, expected {wrong}"):
        fetch.download(served.url, dest, checksum=f"md5:{wrong}", progress=False)
    assert not dest.exists() and not (tmp_path / "data_aishell.tgz.part").exists()
    dest.write_bytes(b"something else")
    with pytest.raises(fetch.ChecksumError, match="data_aishell.tgz: md5 is"):
        fetch.download(served.url, dest, checksum=md5, progress=False)


def test_file_url_resumes_a_partial_file(tmp_path: Path) -> None:
    source = tmp_path / "mirror" / "resource_aishell.tgz"
    source.parent.mkdir()
    source.write_bytes(b"0123456789" * 1000)
    dest = tmp_path / "get" / "resource_aishell.tgz"
    dest.parent.mkdir()
    (dest.parent / "resource_aishell.tgz.part").write_bytes(b"0123456789" * 400)
    digest = hashlib.md5(source.read_bytes()).hexdigest()
    fetch.download(source.as_uri(), dest, checksum=digest, progress=False)
    assert dest.read_bytes() == source.read_bytes()
    with pytest.raises(fetch.DownloadError, match="does not exist"):
        fetch.download((tmp_path / "nowhere.tgz").as_uri(), tmp_path / "x.tgz", progress=False)


def test_download_command_fetches_checks_and_unpacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mirror = tmp_path / "mirror"
    ids = small_aishell(mirror)
    sums = [
        f"--checksum={name}=md5:{hashlib.md5((mirror / name).read_bytes()).hexdigest()}"
        for name in aishell.CHECKSUMS
    ]
    target = tmp_path / "corpus"
    argv = ["download", "aishell", str(target), "--url", mirror.as_uri(), *sums, "--quiet"]
    assert main(argv) == 0
    assert f"--root {target / 'data_aishell'}" in capsys.readouterr().out
    assert {u.speaker for u in scan_split(target, "test")} == set(ids["test"])
    assert json.loads((target / "data_aishell" / aishell.DONE).read_text())["speakers"] == {
        "train": 3,
        "dev": 1,
        "test": 2,
    }
    # openslr's own MD5 does not match the fake archive: the error names both digests
    other = tmp_path / "other"
    assert main(["download", "aishell", str(other), "--url", mirror.as_uri(), "--quiet"]) == 2
    assert "expected 2f494334227864a8a8fec932999db9d8" in capsys.readouterr().err


# -- VoxCeleb1 / VoxCeleb2 / CN-Celeb ------------------------------------------------------------


def voice_clip(spk: int, utt: int, seconds: float = 1.5) -> np.ndarray:
    voice = make_voice(np.random.default_rng(1000 + spk))
    return synthesize_utterance(voice, seconds, np.random.default_rng(spk * 100 + utt))


def make_voxceleb1(root: Path) -> list[str]:
    """``wav/idXXXXX/<yt>/<nnnnn>.wav``: 3 test speakers x 2 videos x 2 clips, 1 dev speaker."""
    names = []
    for s, spk in enumerate(("id10270", "id10271", "id10272", "id10001")):
        for v, video in enumerate(("x6uYqmx31kE", "8jEAjG6SegY")):
            for n in (1, 8):
                name = f"{spk}/{video}/{n:05d}.wav"
                audio.save(root / "wav" / name, voice_clip(s, v * 10 + n), SR)
                names.append(name)
    return names


@pytest.mark.slow  # runs `evaluate` with the packaged model
def test_voxceleb1_official_trials(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "voxceleb1"
    make_voxceleb1(root)
    lines = [
        "1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav",
        "0 id10270/x6uYqmx31kE/00001.wav id10271/8jEAjG6SegY/00001.wav",
        "1 id10271/x6uYqmx31kE/00001.wav id10271/8jEAjG6SegY/00008.wav",
        "0 id10271/x6uYqmx31kE/00008.wav id10272/x6uYqmx31kE/00001.wav",
        "1 id10272/x6uYqmx31kE/00001.wav id10272/8jEAjG6SegY/00001.wav",
        "0 id10272/8jEAjG6SegY/00008.wav id10270/x6uYqmx31kE/00008.wav",
    ]
    (root / "veri_test2.txt").write_text("\n".join(lines) + "\n")
    assert official.detect(root) == "voxceleb1"
    folder = official.write_test_folder(root, tmp_path / "vox1_o")
    trials = read_trials(folder / "trials")
    assert trials[0] == (
        "id10270/x6uYqmx31kE/00001.wav",
        "id10270/8jEAjG6SegY/00008.wav",
        True,
    )
    assert [t for _, _, t in trials] == [True, False, True, False, True, False]
    utts = {u.utt: u for u in read_kaldi_dir(folder)}
    assert len(utts) == 10 and utts["id10271/8jEAjG6SegY/00001.wav"].speaker == "id10271"

    # training part: the dev speakers only (id10270-id10309 are VoxCeleb1's test speakers)
    train = official.training_utterances(root)
    assert {u.speaker for u in train} == {"id10001"} and len(train) == 4

    # `evaluate --root` scores the official list through the model's own scorer
    out = tmp_path / "eval"
    assert main(["evaluate", "--root", str(root), "--out", str(out), "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert (results["n_target"], results["n_nontarget"], results["n_utterances"]) == (3, 3, 10)
    assert len((out / "scores.txt").read_text().splitlines()) == 6

    # `prepare --root`: the dev speakers train, the official list is the dev set
    exp_dir = tmp_path / "exp"
    args = ["prepare", "--root", str(root), f"exp_dir={exp_dir}", "data.train_utts=0", "--quiet"]
    assert main(args) == 0
    data = Experiment(load_config(None, [f"exp_dir={exp_dir}"])).data_dir
    assert {u.speaker for u in read_kaldi_dir(data / "train")} == {"id10001"}
    assert read_trials(data / "test" / "trials") == trials

    # another official list by name; a list naming absent files says so
    (root / "list_test_hard2.txt").write_text(lines[0] + "\n1 id10270/nope/00001.wav x/y/1.wav\n")
    with pytest.raises(CorpusError, match=r"list_test_hard2\.txt names 2 file\(s\) that are"):
        official.write_test_folder(root, tmp_path / "hard", "list_test_hard2.txt")
    capsys.readouterr()


def test_voxceleb_trial_list_errors(tmp_path: Path) -> None:
    bad = tmp_path / "lists" / "veri_test2.txt"
    bad.parent.mkdir()
    bad.write_text("1 a.wav b.wav\nyes a.wav b.wav\n")
    with pytest.raises(CorpusError, match=r"veri_test2\.txt:2: expected '<0\|1> <enroll> <test>'"):
        official.read_voxceleb_trials(bad)
    make_voxceleb1(tmp_path / "vox")
    with pytest.raises(CorpusError, match="no trial list veri_test2.txt or veri_test.txt"):
        official.write_test_folder(tmp_path / "vox", tmp_path / "out")


def write_m4a(path: Path, wave: np.ndarray) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="ipod") as container:
        stream = container.add_stream("aac", rate=SR, layout="mono")
        frame = av.AudioFrame.from_ndarray(wave[None, :], format="fltp", layout="mono")
        frame.sample_rate = SR
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def test_voxceleb2_m4a_decodes_and_lists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("av", reason="PyAV (the voxceleb2 extra) is not installed")
    root = tmp_path / "voxceleb2"
    t = np.arange(SR) / SR
    tone = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    for spk, video in (("id00012", "21Uxsk56VDQ"), ("id00015", "0fijmz4vTVU")):
        for n in (1, 2):
            write_m4a(root / "dev" / "aac" / spk / video / f"{n:05d}.m4a", tone)
    wave = audio.load(root / "dev" / "aac" / "id00012" / "21Uxsk56VDQ" / "00001.m4a")
    assert wave.dtype == np.float32 and abs(len(wave) - SR) < 0.1 * SR  # AAC adds priming
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    assert abs(np.fft.rfftfreq(len(wave), 1 / SR)[np.argmax(spectrum)] - 440.0) < 5.0

    assert official.detect(root) == "voxceleb2"
    out = tmp_path / "vox2_train"
    assert main(["lists", str(root), "--out", str(out), "--quiet"]) == 0
    assert "4 utterances of 2 speakers" in capsys.readouterr().out
    utts = read_kaldi_dir(out)
    assert utts[0].utt == "id00012/21Uxsk56VDQ/00001.m4a" and utts[0].speaker == "id00012"
    with pytest.raises(CorpusError, match="no official trial list"):
        official.write_test_folder(root, tmp_path / "t")


def test_m4a_without_pyav_says_which_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "00001.m4a").write_bytes(b"\0\0\0\x18ftypM4A ")
    monkeypatch.setitem(sys.modules, "av", None)  # import av -> ImportError
    with pytest.raises(audio.AudioError, match=r"00001\.m4a: .*voiceprint\[voxceleb2\]"):
        audio.load(tmp_path / "00001.m4a")


def make_cnceleb(root: Path) -> None:
    """CN-Celeb_flac: data/, dev/dev.lst, eval/{enroll,test,lists}."""
    for s, spk in enumerate(("id00000", "id00001")):
        for n, name in enumerate(("singing-01-001", "speech-02-003")):
            path = root / "data" / spk / f"{name}.flac"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(path), voice_clip(s, n), SR, format="FLAC")
    (root / "dev").mkdir()
    (root / "dev" / "dev.lst").write_text("id00000\nid00001\n")
    evaluation = root / "eval"
    enroll_lines, tests = [], []
    for s, spk in enumerate(("id00800", "id00801")):
        sf.write(str(_mk(evaluation / "enroll" / f"{spk}-enroll.flac")), voice_clip(10 + s, 0), SR)
        enroll_lines.append(f"{spk}-enroll enroll/{spk}-enroll.flac")
        for n, name in enumerate(("interview-01-001", "vlog-03-002")):
            rel = f"test/{spk}-{name}.flac"
            sf.write(str(_mk(evaluation / rel)), voice_clip(10 + s, n + 1), SR)
            tests.append(rel)
    # id00801 is enrolled with two files: they are concatenated into one recording
    sf.write(str(_mk(evaluation / "enroll" / "id00801-extra.flac")), voice_clip(11, 9, 0.5), SR)
    enroll_lines.append("id00801-enroll enroll/id00801-extra.flac")
    lists = _mk(evaluation / "lists" / "x").parent
    (lists / "enroll.lst").write_text("\n".join(enroll_lines) + "\n")
    (lists / "test.lst").write_text("\n".join(tests) + "\n")
    trials = [
        f"{e}-enroll {t} {int(t.startswith(f'test/{e}'))}"
        for e in ("id00800", "id00801")
        for t in tests
    ]
    (lists / "trials.lst").write_text("\n".join(trials) + "\n")


def _mk(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@pytest.mark.slow  # runs `evaluate` with the packaged model
def test_cnceleb_official_trials(tmp_path: Path) -> None:
    root = tmp_path / "CN-Celeb_flac"
    make_cnceleb(root)
    assert official.detect(tmp_path) == "cnceleb"  # the folder above works too
    folder = official.write_test_folder(tmp_path, tmp_path / "cn_eval")
    trials = read_trials(folder / "trials")
    assert len(trials) == 8 and sum(t for _, _, t in trials) == 4
    assert ("id00800-enroll", "test/id00800-interview-01-001.flac", True) in trials
    assert ("id00801-enroll", "test/id00800-vlog-03-002.flac", False) in trials
    utts = {u.utt: u for u in read_kaldi_dir(folder)}
    assert utts["id00800-enroll"].path == (root / "eval/enroll/id00800-enroll.flac").resolve()
    joined = audio.load(utts["id00801-enroll"].path)
    assert len(joined) == int(1.5 * SR) + int(0.5 * SR)  # both enroll files, one recording
    assert utts["test/id00801-vlog-03-002.flac"].speaker == "id00801"

    train = official.training_utterances(tmp_path)
    assert [u.utt for u in train][:2] == ["id00000-singing-01-001", "id00000-speech-02-003"]
    assert {u.speaker for u in train} == {"id00000", "id00001"}

    out = tmp_path / "eval"
    assert main(["evaluate", "--root", str(tmp_path), "--out", str(out), "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert (results["n_target"], results["n_nontarget"]) == (4, 4)


def test_cnceleb_list_errors(tmp_path: Path) -> None:
    make_cnceleb(tmp_path)
    trials = tmp_path / "eval" / "lists" / "trials.lst"
    trials.write_text(trials.read_text() + "id00999-enroll test/id00800-vlog-03-002.flac 1\n")
    with pytest.raises(CorpusError, match="enroll id id00999-enroll is not in .*enroll.lst"):
        official.write_test_folder(tmp_path, tmp_path / "out")
    trials.write_text("id00800-enroll test/id00800-vlog-03-002.flac maybe\n")
    with pytest.raises(CorpusError, match="label 'maybe' is not 0 or 1"):
        official.write_test_folder(tmp_path, tmp_path / "out")


# -- Kaldi wav.scp commands ------------------------------------------------------------------


def kaldi_folder(folder: Path, entries: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wav.scp").write_text("".join(f"{u} {cmd}\n" for u, cmd in entries.items()))
    (folder / "utt2spk").write_text("".join(f"{u} spk{u[-1]}\n" for u in entries))
    return folder


def test_piped_wav_scp_entries_are_run(tmp_path: Path) -> None:
    from voiceprint.data.corpus import write_kaldi_dir
    from voiceprint.data.dataset import load_waves

    clip = voice_clip(0, 0)
    audio.save(tmp_path / "a b.wav", clip, SR)
    sf.write(str(tmp_path / "x.flac"), clip, 8000)  # at 8 kHz: resampled after decoding
    entries = {
        "u1": f"cat '{tmp_path / 'a b.wav'}' |",  # shell quoting, as in Kaldi
        "u2": f"cat {tmp_path / 'x.flac'} | cat |",  # a pipeline inside the command
    }
    if shutil.which("sox"):
        entries["u3"] = f"sox {tmp_path / 'x.flac'} -t wav - |"
    folder = kaldi_folder(tmp_path / "data", entries)
    utts = read_kaldi_dir(folder)
    assert isinstance(utts[0].path, audio.PipeCommand) and utts[0].path.utt == "u1"
    waves = load_waves(utts, SR, progress=False)
    np.testing.assert_allclose(waves[0], clip, atol=1.0 / 32768 + 1e-6)
    assert all(len(w) == 2 * len(clip) for w in waves[1:])  # 8 kHz -> 16 kHz
    # write_kaldi_dir keeps a command as it is (no path resolution)
    again = write_kaldi_dir(tmp_path / "copy", utts)
    assert (again / "wav.scp").read_text().splitlines()[0] == f"u1 {entries['u1']}"
    assert read_kaldi_dir(again) == utts


def test_failing_command_names_utterance_and_stderr(tmp_path: Path) -> None:
    from voiceprint.data.dataset import load_waves

    missing = tmp_path / "gone.wav"
    folder = kaldi_folder(tmp_path / "data", {"utt7": f"cat {missing} |"})
    with pytest.raises(audio.AudioError) as caught:
        load_waves(read_kaldi_dir(folder), SR, progress=False)
    message = str(caught.value)
    assert message.startswith(f"utterance utt7 (command 'cat {missing}')")
    assert "exited with status 1" in message and "No such file or directory" in message

    folder = kaldi_folder(tmp_path / "quiet", {"utt8": "true |"})
    with pytest.raises(
        audio.AudioError, match=r"utterance utt8 \(command 'true'\): wrote no audio"
    ):
        audio.load(read_kaldi_dir(folder)[0].path)
    with pytest.raises(audio.AudioError, match="cannot decode as audio"):
        audio.load(audio.PipeCommand("echo hello |", "utt9"))


def test_ark_offsets_are_refused_by_name(tmp_path: Path) -> None:
    folder = kaldi_folder(tmp_path, {"u1": "/data/raw_wav.1.ark:1234"})
    with pytest.raises(CorpusError, match=r"utterance u1 is an ark offset \(/data/raw_wav\.1\.ark"):
        read_kaldi_dir(folder)


# -- one way in: open_corpus decides the layout ----------------------------------------------


def test_open_corpus_decides_every_layout(tmp_path: Path) -> None:
    from voiceprint.config import DataConfig
    from voiceprint.data.layouts import open_corpus

    # AISHELL-1 as distributed: unpacked first, then read as the AISHELL layout
    ids = small_aishell(tmp_path / "downloads")
    corpus = open_corpus(tmp_path / "downloads", progress=False)
    assert (corpus.layout, corpus.root.name) == ("aishell", "data_aishell")
    assert corpus.splits() == ["train", "dev", "test"] and not corpus.official
    assert {u.speaker for u in corpus.train()} == set(ids["train"])
    assert {u.speaker for u in corpus.test()} == set(ids["test"])
    assert len(corpus.recordings()) == 3 * 2 + 1 * 2 + 2 * 2
    assert len(corpus.recordings(["dev"])) == 2
    with pytest.raises(CorpusError, match="has no wav/eval/ folder"):
        corpus.recordings(["eval"])
    assert open_corpus(corpus.root).root == corpus.root  # the unpacked tree reads the same

    # a Kaldi folder (found by its wav.scp), commands included; its own trial list if any
    kaldi = kaldi_folder(tmp_path / "kaldi", {"u1": "sox a.wav -t wav - |", "u2": "b.wav"})
    corpus = open_corpus(kaldi)
    assert corpus.layout == "kaldi" and corpus.trials_file is None
    assert [u.utt for u in corpus.train()] == [u.utt for u in corpus.test()] == ["u1", "u2"]
    (kaldi / "trials").write_text("u1 u2 nontarget\n")
    assert open_corpus(kaldi).trials_file == kaldi / "trials"
    with pytest.raises(CorpusError, match="has no wav.scp"):
        open_corpus(tmp_path / "none", layout="kaldi").train()

    # VoxCeleb1 and CN-Celeb: their training part, their official list for the test part
    make_voxceleb1(tmp_path / "vox1")
    corpus = open_corpus(tmp_path / "vox1")
    assert corpus.layout == "voxceleb1" and corpus.official
    assert {u.speaker for u in corpus.train()} == {"id10001"}
    with pytest.raises(CorpusError, match="official trial list"):
        corpus.test()
    make_cnceleb(tmp_path / "cn" / "CN-Celeb_flac")
    corpus = open_corpus(tmp_path / "cn")
    assert corpus.layout == "cnceleb" and len(corpus.train()) == 4
    folder = corpus.write_official_test(tmp_path / "cn_eval")
    assert len(read_trials(folder / "trials")) == 2 * 4  # 2 enrolled x 4 test files

    # no root: the synthetic corpus; a root that is nothing known: named
    data = DataConfig(cache_dir=str(tmp_path / "cache"), synthetic_speakers=2, synthetic_utts=2)
    corpus = open_corpus(None, data=data, progress=False)
    assert corpus.layout == "synthetic" and len({u.speaker for u in corpus.train()}) == 2
    with pytest.raises(CorpusError, match="does not exist"):
        open_corpus(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="AISHELL-1 layout expected"):
        open_corpus(tmp_path / "empty")
