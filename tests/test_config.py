from pathlib import Path

import pytest

from voiceprint.config import ConfigError, ExperimentConfig, load_config, save_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_defaults_and_overrides() -> None:
    config = load_config(None, ["train.epochs=3", "data.root=/x/data_aishell", "loss.margin=0.3"])
    assert config.train.epochs == 3
    assert config.data.root == "/x/data_aishell"
    assert config.loss.margin == pytest.approx(0.3)
    assert config.checkpoint_name == "xvector_gap_softmax_checkpoint.pth"


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
