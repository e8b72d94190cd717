"""The former home of the commands that use a model, kept so that its imports keep working.

The options, defaults and helpers every command shares live in :mod:`voiceprint.cli.common`;
enroll, verify, identify, compare and speakers in :mod:`voiceprint.cli.store_cmds`;
calibrate, embed, export and serve in :mod:`voiceprint.cli.model_cmds`.
"""

from voiceprint.cli.common import (
    DEFAULT_DB,
    choose_decision,
    db_label,
    db_path,
    default_model,
    load_model,
    model_path,
    needs_extra,
    open_store,
)
from voiceprint.cli.model_cmds import labelled_recordings

__all__ = [
    "DEFAULT_DB",
    "choose_decision",
    "db_label",
    "db_path",
    "default_model",
    "labelled_recordings",
    "load_model",
    "model_path",
    "needs_extra",
    "open_store",
]
