"""The errors a speaker store raises for its users."""

from __future__ import annotations

from voiceprint.errors import VoiceprintError

REENROLL_HOW = (
    "embeddings of different models cannot be compared: re-enroll the speakers with this "
    "model (voiceprint enroll --model MODEL NAME FILE...), or keep using the model they "
    "were enrolled with (--model)"
)


class ModelMismatchError(VoiceprintError, ValueError):
    """Embeddings of one model were about to be compared with those of another."""


class UnknownSpeakerError(VoiceprintError, KeyError):
    """The named speaker is not enrolled."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown speaker"
