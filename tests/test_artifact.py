"""Model files cannot run code: a crafted pickle is refused and does nothing."""

from __future__ import annotations

import pathlib
from pathlib import Path

import pytest
import torch

from voiceprint.artifact import MODEL_FORMAT, read_model
from voiceprint.cli import main


class WritesAFile:
    """Unpickling this calls ``Path.write_text(target, "code ran")``."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple:
        return (pathlib.Path.write_text, (pathlib.Path(self.target), "code ran"))


def crafted(tmp_path: Path) -> tuple[Path, Path]:
    """A .pth that looks like a voiceprint checkpoint and writes ``target`` when unpickled."""
    target = tmp_path / "pwned.txt"
    path = tmp_path / "model.pth"
    torch.save({"format": MODEL_FORMAT, "encoder": WritesAFile(target)}, path)
    return path, target


def test_a_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    path, target = crafted(tmp_path)
    with pytest.raises(ValueError, match=r"model\.pth holds objects other than tensors"):
        read_model(path)
    assert not target.exists()
    # The file really is an attack: unsafe loading runs it (so the test above can fail).
    torch.load(path, weights_only=False)
    assert target.read_text() == "code ran"


def test_the_cli_refuses_it_with_the_file_name(tmp_path: Path, capsys) -> None:
    path, target = crafted(tmp_path)
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"")
    assert main(["compare", "--model", str(path), str(wav), str(wav)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "could run code" in err
    assert not target.exists()
