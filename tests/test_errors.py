"""Every error a user should see derives from VoiceprintError and keeps its own base."""

from __future__ import annotations

import pytest

from voiceprint.audio import AudioError, AudioTooLongError
from voiceprint.config import ConfigError
from voiceprint.data.corpus import CorpusError
from voiceprint.data.fetch import ChecksumError, DownloadError, UnsafeArchiveError
from voiceprint.errors import VoiceprintError
from voiceprint.registry import UnknownNameError, UnknownOptionError, build, lookup
from voiceprint.scoring import MissingEmbeddingError
from voiceprint.service.access import KeyFileError
from voiceprint.store import ModelMismatchError, UnknownSpeakerError
from voiceprint.vad import NoSpeechError


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (AudioError, ValueError),
        (AudioTooLongError, ValueError),
        (NoSpeechError, ValueError),
        (ConfigError, ValueError),
        (CorpusError, ValueError),
        (DownloadError, ValueError),
        (ChecksumError, ValueError),
        (UnsafeArchiveError, ValueError),
        (ModelMismatchError, ValueError),
        (KeyFileError, ValueError),
        (UnknownSpeakerError, KeyError),
        (MissingEmbeddingError, KeyError),
        (UnknownNameError, KeyError),
        (UnknownOptionError, TypeError),
    ],
)
def test_user_errors_share_one_base_and_keep_their_own(error: type, builtin: type) -> None:
    assert issubclass(error, VoiceprintError) and issubclass(error, builtin)
    message = "clip.wav: cannot decode as audio"
    assert str(error(message)) == message  # as written: a KeyError's is not quoted


def test_registry_typos_are_user_errors() -> None:
    import voiceprint.models  # noqa: F401 - registers the models

    with pytest.raises(UnknownNameError, match="unknown model 'tdnnx'.*xvector") as raised:
        lookup("model", "tdnnx")
    assert str(raised.value).startswith("unknown model")  # unquoted
    with pytest.raises(UnknownOptionError, match="chanels"):
        build("model", "xvector", feat_dim=30, chanels=3)
