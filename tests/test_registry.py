import subprocess
import sys

import pytest

import voiceprint.features
import voiceprint.losses
import voiceprint.models
import voiceprint.pooling  # noqa: F401 - importing the four fills the registry
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


def test_the_registry_imports_no_model_module() -> None:
    """No import cycle: the registry stands alone; models register when imported."""
    code = (
        "import sys, voiceprint.registry as r\n"
        "assert not [m for m in sys.modules if m.startswith('voiceprint.models')], sys.modules\n"
        "try:\n    r.lookup('model', 'xvector')\nexcept KeyError as e:\n    print(e)\n"
        "import voiceprint.models\nprint(r.lookup('model', 'xvector').__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "import voiceprint.models first" in out.stdout and out.stdout.endswith("Xvector\n")
