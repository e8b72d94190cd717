"""One experiment's folder: every path a run reads or writes under ``exp/<name>/``.

    exp/<name>/
      data/train/ data/calibration/ data/test/   the prepared Kaldi lists (prepare)
      data/settings.json                         the data settings they were drawn with
      train_state.pth                            what training resumes from (train)
      model.pth                                  the model that ships (release only)
      config.yaml  training.png                  the resolved recipe, training curves
      results.json scores.txt llr.txt            the dev-set evaluation, with roc.png,
      roc.png det.png scores.png                 det.png and scores.png
      eval/<tag>/                                the same for other trial sets or back-ends
      shards/                                    tar shards of the training list

    exp = Experiment(config)
    prepared = exp.prepare()          # or exp.prepared(): the lists, if still valid
    exp.train_state, exp.model_file   # exp/<name>/train_state.pth, exp/<name>/model.pth

Experiments of format 1 hold one ``<model>_<pooling>_<loss>_checkpoint.pth`` instead of
both; they still load and resume (``legacy_checkpoint``). Imports nothing heavy:
inference (``find_model``) goes through here.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from voiceprint.config import ExperimentConfig
from voiceprint.data.corpus import Utterance, read_kaldi_dir

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIX = "_checkpoint.pth"  # format 1: model and training state in one file
MODEL_FILE = "model.pth"
TRAIN_STATE_FILE = "train_state.pth"
SETTINGS_FILE = "settings.json"
RESULTS_FILE = "results.json"
SCORES_FILE = "scores.txt"
LLR_FILE = "llr.txt"


@dataclass
class Prepared:
    """Prepared Kaldi data folders: ``train/``, ``test/`` and, when speakers were held
    out, ``calibration/``."""

    train_dir: Path
    test_dir: Path
    calibration_dir: Path | None = None

    @property
    def train(self) -> list[Utterance]:
        return read_kaldi_dir(self.train_dir)

    @property
    def test(self) -> list[Utterance]:
        return read_kaldi_dir(self.test_dir)

    @property
    def heldout(self) -> list[Utterance]:
        """The held-out (calibration) speakers' utterances; none when there is no folder."""
        folder = self.calibration_dir
        return read_kaldi_dir(folder) if folder is not None and folder.is_dir() else []


class Experiment:
    """The paths of one experiment, ``exp_dir/name`` of ``config`` (or ``folder``: the
    one a model file lies in, which may have been moved)."""

    def __init__(self, config: ExperimentConfig, folder: str | Path | None = None) -> None:
        self.config = config
        self.folder = Path(config.exp_dir) / config.name if folder is None else Path(folder)

    def __repr__(self) -> str:
        return f"Experiment({str(self.folder)!r})"

    # -- prepared data ---------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    @property
    def train_dir(self) -> Path:
        return self.data_dir / "train"

    @property
    def calibration_dir(self) -> Path:
        """The held-out training speakers (exists only when ``data.heldout_share`` > 0)."""
        return self.data_dir / "calibration"

    @property
    def test_dir(self) -> Path:
        return self.data_dir / "test"

    @property
    def settings_file(self) -> Path:
        return self.data_dir / SETTINGS_FILE

    @property
    def lists(self) -> Prepared:
        """The prepared folders (whether or not :meth:`prepare` has written them yet)."""
        return Prepared(self.train_dir, self.test_dir, self.calibration_dir)

    def settings(self) -> dict[str, Any]:
        """What the prepared lists depend on: the data settings and the seed, as JSON."""
        return json.loads(json.dumps({"data": asdict(self.config.data), "seed": self.config.seed}))

    def prepare(self, progress: bool = True) -> Prepared:
        """Apply the protocol (:func:`voiceprint.data.protocol.write_lists`) and write
        ``data/{train,calibration,test}`` and ``data/settings.json``."""
        from voiceprint.data.protocol import write_lists

        write_lists(self.config.data, self.data_dir, self.config.features.sample_rate, progress)
        self.settings_file.write_text(json.dumps(self.settings(), indent=2), "utf-8")
        log.info("wrote Kaldi lists and trials to %s", self.data_dir)
        return self.lists

    def prepared(self) -> tuple[Prepared | None, str]:
        """The lists :meth:`prepare` wrote for exactly these settings, or None and why.

        Lists written for other ``data.*`` settings (or by a version that did not record
        them) are not reused: the reason names the settings that changed.
        """
        out = self.data_dir
        if not (self.train_dir / "wav.scp").is_file():
            return None, f"no prepared lists in {out}"
        try:
            saved = json.loads(self.settings_file.read_text("utf-8"))
        except (OSError, ValueError):
            return None, f"{out} does not record the settings it was prepared with"
        now = self.settings()
        changed = sorted(
            f"data.{k}: {saved['data'].get(k)!r} -> {v!r}"
            for k, v in now["data"].items()
            if saved.get("data", {}).get(k) != v
        )
        if saved.get("seed") != now["seed"]:
            changed.append(f"seed: {saved.get('seed')!r} -> {now['seed']!r}")
        if changed:
            listed = "; ".join(changed)
            return None, f"the lists in {out} were prepared with other settings ({listed})"
        return self.lists, ""

    # -- training and the model ------------------------------------------------------------

    @property
    def train_state(self) -> Path:
        """What training writes after every epoch and resumes from (never shipped)."""
        return self.folder / TRAIN_STATE_FILE

    @property
    def model_file(self) -> Path:
        """The model that ships: written by the release step only."""
        return self.folder / MODEL_FILE

    @property
    def legacy_checkpoint(self) -> Path:
        """``<model>_<pooling>_<loss>_checkpoint.pth``: model and state of format 1."""
        model, loss = self.config.model, self.config.loss
        return self.folder / f"{model.name}_{model.pooling}_{loss.name}{CHECKPOINT_SUFFIX}"

    def resumable_state(self) -> Path | None:
        """The training state to resume from (a format-1 checkpoint too), or None."""
        for path in (self.train_state, self.legacy_checkpoint):
            if path.is_file():
                return path
        return None

    @property
    def config_file(self) -> Path:
        """The resolved recipe, as training ran it."""
        return self.folder / "config.yaml"

    @property
    def shards_dir(self) -> Path:
        return self.folder / "shards"

    def picture(self, name: str) -> Path:
        """A picture in the experiment folder: ``training.png``, ``roc.png``, ..."""
        return self.folder / name

    # -- results ---------------------------------------------------------------------------

    def eval_dir(self, tag: str) -> Path:
        """Where an evaluation on another trial set or back-end writes (``tag`` names them);
        the dev set with the model's own back-end is written into the folder itself."""
        return self.folder / "eval" / tag

    @property
    def results_file(self) -> Path:
        return self.folder / RESULTS_FILE

    @property
    def scores_file(self) -> Path:
        return self.folder / SCORES_FILE


def find_model(path: str | Path) -> Path:
    """A model file as given, or the experiment folder's ``model.pth`` (or its one
    format-1 ``*_checkpoint.pth``).

    Clear errors for a path that does not exist, a folder without a released model and
    a folder with several.
    """
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"model or experiment {path} does not exist")
    if (path / MODEL_FILE).is_file():
        return path / MODEL_FILE
    found = sorted(path.glob(f"*{CHECKPOINT_SUFFIX}"))
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise ValueError(f"several checkpoints in {path} ({names}): pass one of them")
    if found:
        return found[0]
    if (path / TRAIN_STATE_FILE).is_file():
        raise FileNotFoundError(
            f"{path} holds a training state but no {MODEL_FILE}: training was not released "
            "(run 'voiceprint train' with its config again: it resumes, then releases)"
        )
    raise FileNotFoundError(f"no {MODEL_FILE} in experiment folder {path}")
