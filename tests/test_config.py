import warnings
from pathlib import Path

import pytest

from voiceprint.config import ConfigError, ExperimentConfig, load_config, save_config
from voiceprint.experiment import Experiment

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_defaults_and_overrides() -> None:
    config = load_config(None, ["train.epochs=3", "data.root=/x/data_aishell", "loss.margin=0.3"])
    assert config.train.epochs == 3
    assert config.data.root == "/x/data_aishell"
    assert config.loss.margin == pytest.approx(0.3)
    experiment = Experiment(config)
    assert experiment.model_file.name == "model.pth"
    assert experiment.legacy_checkpoint.name == "xvector_gap_softmax_checkpoint.pth"


def test_exponent_without_a_dot_is_a_number() -> None:
    """YAML 1.1 reads 1e-5 as text; a float field takes it as the number it spells."""
    assert load_config(None, ["train.lr=1e-5"]).train.lr == pytest.approx(1e-5)


def test_tuple_and_dict_values() -> None:
    config = load_config(None, ["augment.noise_snr_db=[0, 10]", "model.params={channels: 256}"])
    assert config.augment.noise_snr_db == (0.0, 10.0)
    assert config.model.params == {"channels": 256}
    factors = load_config(None, ["augment.speed_factors=[0.9, 1.1, 1.2]"]).augment.speed_factors
    assert factors == (0.9, 1.1, 1.2)
    assert load_config(None, []).augment.speed_factors == (0.9, 1.1)


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epoch=3", "unknown config key 'train.epoch'"),
        ("bogus=1", "unknown config key 'bogus'"),
        ("train.epochs=many", "train.epochs: expected an integer"),
        ("train.lr=fast", "train.lr: expected a number"),
        ("train.lr=nan", "train.lr: expected a number"),
        ("augment.speed_perturb=3", "expected true/false"),
        ("augment.speed_factors=1.2", "augment.speed_factors: expected a list"),
        ("augment.speed_factors=[fast]", "augment.speed_factors: expected a number"),
        ("train", "not of the form"),
    ],
)
def test_bad_overrides_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_unknown_key_in_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  nmae: xvector\n")
    with pytest.raises(ConfigError, match="model.nmae"):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_save_round_trip(tmp_path: Path) -> None:
    config = load_config(CONFIGS / "xvector_gap_amsoftmax.yaml", ["train.epochs=7"])
    save_config(config, tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml")
    assert again == config
    assert again.loss.name == "amsoftmax"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path: Path) -> None:
    config = load_config(path)
    assert isinstance(config, ExperimentConfig)
    assert config.name == path.stem


def test_data_sample_rate_of_earlier_versions_maps_onto_the_one_rate(tmp_path: Path) -> None:
    """features.sample_rate is the one sample rate; data.sample_rate (earlier versions)
    still loads where it agrees, and is an error naming both where it does not."""
    from voiceprint.config import from_dict

    recipe = tmp_path / "old.yaml"
    recipe.write_text("data:\n  sample_rate: 16000\n  seed: 7\n")
    with pytest.warns(DeprecationWarning, match="data.sample_rate is deprecated"):
        config = load_config(recipe)
    assert config.features.sample_rate == 16000 and config.data.seed == 7
    assert not hasattr(config.data, "sample_rate")
    recipe.write_text("data:\n  sample_rate: 8000\nfeatures:\n  sample_rate: 8000\n")
    with pytest.warns(DeprecationWarning):
        assert load_config(recipe).features.sample_rate == 8000
    recipe.write_text("data:\n  sample_rate: 8000\n")
    with pytest.raises(ConfigError, match="data.sample_rate=8000 disagrees with features"):
        load_config(recipe)
    with pytest.raises(ConfigError, match="disagrees"):
        load_config(None, ["data.sample_rate=8000"])

    # a model file's config (written by an earlier version) loads without a warning
    embedded = ExperimentConfig().to_dict()
    embedded["data"]["sample_rate"] = 16000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert from_dict(embedded).to_dict() == ExperimentConfig().to_dict()
