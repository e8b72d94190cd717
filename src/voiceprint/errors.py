"""The one base of every error a user should see (a leaf: imports nothing of the project).

    try:
        ...
    except VoiceprintError as err:    # bad input, a missing or damaged file, a wrong config
        print(f"error: {err}")       # one line that names the problem

Each such error also keeps the built-in base it always had, so code that catches that
still works: ``AudioError`` (and ``NoSpeechError``), ``ConfigError``, ``CorpusError``,
``ModelMismatchError`` and ``KeyFileError`` are ValueErrors, ``UnknownSpeakerError``,
``MissingEmbeddingError`` (trials without an embedding) and the registry's unknown name
are KeyErrors, the registry's unknown option a TypeError.
The CLI prints these as one line and exits 2; any other TypeError or KeyError escaping a
command is a bug and shows its traceback.
"""

from __future__ import annotations


class VoiceprintError(Exception):
    """An error in what the user gave (input, files, configuration), not in the code;
    its message is one line that names the problem."""

    def __str__(self) -> str:
        # KeyError would print its message quoted (its repr): the message as written.
        if len(self.args) == 1:
            return str(self.args[0])
        return super().__str__()
