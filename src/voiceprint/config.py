"""Typed experiment configuration: YAML files plus dotted ``key=value`` overrides.

Every key has a type and a default here; a key that does not exist is an error that
names it (a typo never passes silently). Values derived from data, such as the number
of training speakers, are computed in code and never written back into the config.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from voiceprint.errors import VoiceprintError


class ConfigError(VoiceprintError, ValueError):
    """A config file or override that cannot be applied."""


@dataclass
class DataConfig:
    """Where the corpus is and which part of it the protocol takes."""

    # AISHELL-1 layout root (data_aishell/ or the folder above wav/; or the folder holding
    # data_aishell.tgz + resource_aishell.tgz, unpacked first), or VoxCeleb1 / CN-Celeb
    root: str | None = None
    # Several corpora at once: name -> AISHELL-layout root. Speaker and utterance ids get
    # the prefix "<name>-" so that corpora never share a speaker; replaces ``root``.
    corpora: dict[str, str] = field(default_factory=dict)
    dev_corpus: str = ""  # whose test split is the experiment's dev set; "" = the first
    # Training speakers drawn per corpus (name -> count, 0 = all of it); the corpora not
    # named share what is left of train_speakers. Empty: one draw over all corpora.
    corpus_speakers: dict[str, int] = field(default_factory=dict)
    # How each corpus is sampled in an epoch: its share of the crops is proportional to
    # (its utterances)^power. 1 = every utterance once; 0 = every corpus equally; 0.5
    # lets the small corpora count without repeating them many times over.
    corpus_sampling_power: float = 1.0
    heldout_share: float = 0.0  # training speakers held out (never trained on) for calibration
    kaldi_dir: str | None = None  # alternative: a Kaldi data folder (wav.scp + utt2spk) to train on
    # A shard folder ('voiceprint shard'): training streams it through train.workers
    # DataLoader workers instead of decoding the training list into memory
    shards: str | None = None
    train_speakers: int = 300
    train_utts: int = 10  # per speaker; 0 = every utterance the speaker has
    test_speakers: int = 20
    test_utts: int = 10
    enroll_utts: int = 1  # first k test utterances of each speaker enroll it
    # THE data seed: which speakers and utterances the protocol draws (train, test,
    # held-out) and the synthetic corpus. Apart from the top-level ``seed`` (training) so
    # that the prepared lists of every recipe stay what they were.
    seed: int = 1234
    cache_dir: str = "exp/.cache"  # decoded 16 kHz audio, shared by experiments
    synthetic_speakers: int = 40  # used when root and kaldi_dir are both unset
    synthetic_utts: int = 12


@dataclass
class FeatureConfig:
    """Front-end settings; they travel inside every checkpoint."""

    kind: str = "mfcc"  # mfcc | fbank
    sample_rate: int = 16000  # THE sample rate: of the model's input, shards, joined audio
    n_fft: int = 512
    win_ms: float = 25.0
    hop_ms: float = 10.0
    n_mels: int = 40
    n_mfcc: int = 30
    f_min: float = 20.0
    f_max: float | None = 7600.0
    mean_norm: bool = True  # subtract the per-utterance mean over time (CMN)
    preemphasis: float = 0.97


@dataclass
class ModelConfig:
    """Encoder: a registered model name, its pooling and its hyperparameters."""

    name: str = "xvector"
    pooling: str = "gap"  # gap | stats | asp
    embedding_dim: int = 512
    params: dict[str, Any] = field(default_factory=dict)  # extra constructor keywords


@dataclass
class LossConfig:
    """Classification head used for training; not part of the exported embedder."""

    name: str = "softmax"  # softmax | amsoftmax | aamsoftmax
    scale: float = 30.0
    margin: float = 0.2
    margin_warmup_epochs: int = 0  # AAM: margin rises linearly from 0 over these epochs


@dataclass
class AugmentConfig:
    """On-the-fly augmentation, each part switchable."""

    noise_prob: float = 0.0  # coloured noise and babble at random SNR
    noise_snr_db: tuple[float, float] = (5.0, 20.0)
    babble_prob: float = 0.0
    reverb_prob: float = 0.0  # synthetic room impulse responses
    speed_perturb: bool = False  # speed-changed copies of every training speaker as new speakers
    speed_factors: tuple[float, ...] = (0.9, 1.1)  # their factors (> 1: faster, higher voice)
    # Telephone channel: band-limited through 8 kHz and G.711 mu-law coded, per item
    telephone_prob: float = 0.0
    gain_prob: float = 0.0  # recording level: a random gain in gain_db (peak kept below 1)
    gain_db: tuple[float, float] = (-20.0, 6.0)
    specaugment: bool = False
    spec_time_masks: int = 1
    spec_time_width: int = 10
    spec_freq_masks: int = 1
    spec_freq_width: int = 8


@dataclass
class TrainConfig:
    """Optimisation and batching."""

    epochs: int = 20
    batch_size: int = 64
    crop_seconds: float = 2.0
    # Short inputs: this share of the batches is cropped to short_crop_seconds instead
    short_crop_share: float = 0.0
    short_crop_seconds: float = 1.0
    optimizer: str = "adamw"  # adamw (decoupled weight decay) | adam (L2 in the gradient) | sgd
    lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 1e-5
    scheduler: str = "cosine"  # cosine | step | constant
    warmup_epochs: int = 1
    step_every: int = 10  # step scheduler: epochs between decays
    step_gamma: float = 0.5
    grad_clip: float = 5.0
    average_last: int = 1  # average the weights of the last N epochs into the final model
    threads: int = 0  # torch threads; 0 = leave torch's default
    workers: int = 2  # DataLoader workers reading data.shards (0: in the training process)
    precision: str = "fp32"  # fp32 | bf16: autocast the encoder trunk to bfloat16
    compile: bool = False  # torch.compile the encoder (inductor; needs a C++ compiler)
    log_every: int = 0  # 0 = a log line per epoch only
    finetune_epochs: int = 0  # large-margin fine-tuning on longer crops after the main run
    finetune_crop_seconds: float = 4.0
    finetune_margin: float = 0.3
    finetune_lr: float = 1e-4


@dataclass
class EvalConfig:
    """Scoring back-end and reporting."""

    trials: str = "pairs"  # pairs | enroll
    max_seconds: float = 0.0  # 0 = embed whole utterances
    mean_subtract: bool = False  # subtract the training-embedding mean before cosine
    asnorm_top: int = 0  # adaptive s-norm with a cohort of training speakers; 0 = off
    # LDA of the training speakers after the mean, before cosine: dimensions kept (capped
    # at the embedding's; equal to it: within-speaker whitening; implies the mean); 0 = off
    lda_dim: int = 0
    calibrate: bool = False  # fit a score -> LLR calibration on the held-out speakers
    calibration_enroll_utts: int = 1  # clips per speaker model in the calibration trials
    # Quality-aware calibration: the LLR also depends on the net speech of both sides
    quality_calibration: bool = False
    # Thresholds at false-accept rates hold on every calibration corpus (the strictest
    # corpus' threshold at each rate), not only on their mixture
    far_per_corpus: bool = False
    # ... where a corpus holds at least this many held-out speakers; smaller corpora are
    # measured together as one group (1 speaker pair cannot measure a false-accept rate)
    far_min_speakers: int = 1
    # Each held-out corpus weighs the same in the calibration fit (within each class),
    # however many clips per speaker it has
    balance_corpora: bool = False
    # The default decision: Bayes at this prior of a target (0: at p_target), chosen on dev
    decision_prior: float = 0.0
    # Below this net speech (s) on either side a decision answers "not enough speech"
    min_speech_seconds: float = 0.0
    vad: bool = False  # trim non-speech (silero-vad) before embedding, in every inference path
    p_target: float = 0.01
    bootstrap: int = 1000  # resamples over test speakers for the EER confidence interval


@dataclass
class ExperimentConfig:
    """One recipe: data, front-end, model, loss, augmentation, training and evaluation."""

    name: str = "xvector_gap_softmax"
    exp_dir: str = "exp"  # the run lives in exp_dir/name (voiceprint.experiment.Experiment)
    # THE training seed: weights, batches, augmentation, bootstrap, cohort draws. What the
    # protocol selects is drawn with data.seed instead (see DataConfig.seed).
    seed: int = 42
    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Convert ``value`` to the annotated type ``hint`` or raise ConfigError."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{where}: cannot be {value!r}")
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list of values, got {value!r}")
        return tuple(_coerce(v, args[0], where) for v in value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{where}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, where) for v, a in zip(value, args, strict=True))
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-9" (no dot) as text
            try:
                number = float(value)
            except ValueError:
                pass
            else:
                if math.isfinite(number):
                    return number
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if hint is Any:
        return value
    raise ConfigError(f"{where}: unsupported type {hint!r}")


def _apply(obj: Any, values: dict[str, Any], prefix: str) -> None:
    hints = typing.get_type_hints(type(obj))
    known = {f.name for f in fields(obj)}
    for key, value in values.items():
        where = f"{prefix}{key}"
        if key not in known:
            raise ConfigError(
                f"unknown config key {where!r}; valid keys: {', '.join(sorted(known))}"
            )
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: expected a mapping, got {value!r}")
            _apply(current, value, where + ".")
        else:
            setattr(obj, key, _coerce(value, hints[key], where))


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key.path=value")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw) if raw.strip() else None


# Keys of earlier versions that are still read: old key -> the key that now holds the
# one value. An old key that agrees with the new one is dropped (with a DeprecationWarning
# for recipes and overrides, silently for the config a model file carries); one that
# disagrees is an error naming both.
LEGACY_KEYS = {"data.sample_rate": "features.sample_rate"}


def _split_legacy(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``values`` without the keys of :data:`LEGACY_KEYS`, and those keys' values."""
    rest, legacy = dict(values), {}
    for old in LEGACY_KEYS:
        section, key = old.split(".")
        part = rest.get(section)
        if isinstance(part, dict) and key in part:
            part = dict(part)
            legacy[old] = part.pop(key)
            rest[section] = part
    return rest, legacy


def _check_legacy(config: ExperimentConfig, legacy: dict[str, Any], warn: bool) -> None:
    for old, value in legacy.items():
        new = LEGACY_KEYS[old]
        section, key = new.split(".")
        current = getattr(getattr(config, section), key)
        if _coerce(value, type(current), old) != current:
            raise ConfigError(
                f"{old}={value!r} disagrees with {new}={current!r}: {old} is no longer a "
                f"setting, {new} is the one value; remove {old}"
            )
        if warn:
            warnings.warn(
                f"{old} is deprecated: {new} is the one value; remove {old}",
                DeprecationWarning,
                stacklevel=4,
            )


def from_dict(values: dict[str, Any], *, warn_legacy: bool = False) -> ExperimentConfig:
    """Build a config from a (possibly partial) nested mapping.

    Keys of earlier versions (:data:`LEGACY_KEYS`) are mapped: a model file's config
    carries them; ``warn_legacy`` warns about them (recipes).
    """
    config = ExperimentConfig()
    rest, legacy = _split_legacy(values or {})
    _apply(config, rest, "")
    _check_legacy(config, legacy, warn_legacy)
    return config


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None
) -> ExperimentConfig:
    """Read a YAML recipe (or the defaults) and apply ``key.path=value`` overrides.

    >>> load_config(None, ["train.epochs=2", "data.root=/data/data_aishell"]).train.epochs
    2
    """
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
        if not isinstance(values, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return apply_overrides(from_dict(values, warn_legacy=True), overrides or [])


def apply_overrides(config: ExperimentConfig, overrides: list[str]) -> ExperimentConfig:
    """Apply ``key.path=value`` overrides to ``config`` in place and return it."""
    for text in overrides:
        keys, value = _parse_override(text)
        nested: dict[str, Any] = {keys[-1]: value}
        for key in reversed(keys[:-1]):
            nested = {key: nested}
        rest, legacy = _split_legacy(nested)
        _apply(config, rest, "")
        _check_legacy(config, legacy, warn=True)
    return config


def save_config(config: ExperimentConfig, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
