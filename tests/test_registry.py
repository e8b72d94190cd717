import pytest

from voiceprint import registry


def test_every_kind_has_names() -> None:
    assert {"xvector", "ecapa_tdnn", "resnet34"} <= set(registry.names("model"))
    assert {"gap", "stats", "asp"} <= set(registry.names("pooling"))
    assert {"softmax", "amsoftmax", "aamsoftmax"} <= set(registry.names("loss"))
    assert {"mfcc", "fbank"} <= set(registry.names("frontend"))


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(KeyError, match="unknown model 'tdnnx'.*xvector"):
        registry.build("model", "tdnnx", feat_dim=30)


def test_unknown_option_is_named() -> None:
    with pytest.raises(TypeError, match="chanels"):
        registry.build("model", "xvector", feat_dim=30, chanels=3)
