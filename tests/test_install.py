"""The core install (``bash scripts/setup.sh``, no extras) runs the packaged default model,
and every command that needs an extra says which one."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voiceprint.cli import main
from voiceprint.synth import make_voice, synthesize_utterance

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "src" / "voiceprint" / "assets" / "default.onnx"
# Import names that only extras install: never available on the core install.
EXTRAS_ONLY = ("matplotlib", "onnx", "onnxscript", "fastapi", "faiss", "psycopg")

# Runs the CLI in a fresh interpreter that imports, besides the standard library and what
# is already loaded, only the modules of the core install (argv[1], comma-separated): a
# meta-path finder refuses every other top-level name, as after `pip install voiceprint`.
CORE_ONLY = """
import importlib.abc, json, sys
allowed = set(sys.argv[1].split(",")) | set(sys.stdlib_module_names) | {"voiceprint"}
allowed |= {m.split(".")[0] for m in sys.modules}
refused = set()
class CoreOnly(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top not in allowed:
            refused.add(top)
            raise ModuleNotFoundError(f"No module named {name!r} (core install)", name=name)
        return None
sys.meta_path.insert(0, CoreOnly())
from voiceprint.cli import main
code = main(sys.argv[2:])
print(json.dumps({"code": code, "refused": sorted(refused)}))
"""


def _project() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower() for r in requirements}


def core_modules() -> set[str]:
    """Top-level import names of pyproject's core dependencies and of everything they
    require in turn (markers evaluated, extras of theirs only where asked for)."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    provides: dict[str, set[str]] = {}
    for module, dists in metadata.packages_distributions().items():
        for dist in dists:
            provides.setdefault(canonicalize_name(dist), set()).add(module)
    seen: set[str] = set()
    todo = [Requirement(r) for r in _project()["dependencies"]]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:  # a core dependency not installed here
            pytest.fail(f"core dependency {req.name} is not installed")
        for child in map(Requirement, requires):
            asked = {"", *req.extras}
            if child.marker is None or any(child.marker.evaluate({"extra": e}) for e in asked):
                todo.append(child)
    return set().union(*(provides.get(name, set()) for name in seen))


def test_the_core_install_runs_onnx_models_and_plots_are_an_extra() -> None:
    project = _project()
    core = _names(project["dependencies"])
    extras = {k: _names(v) for k, v in project["optional-dependencies"].items()}
    assert {"onnxruntime", "silero-vad", "soundfile", "torch"} <= core
    assert not core & {"onnx", "onnxscript", "matplotlib", "fastapi", "faiss-cpu", "psycopg"}
    assert {"onnx", "onnxscript"} <= extras["onnx"] and "matplotlib" in extras["plots"]


def test_compare_with_the_default_model_on_the_core_install(tmp_path: Path) -> None:
    if not DEFAULT_MODEL.is_file():
        pytest.skip("no default model is packaged")
    allowed = core_modules() - set(EXTRAS_ONLY)
    rng = np.random.default_rng(7)
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"clip{i}.wav")
        sf.write(paths[-1], synthesize_utterance(make_voice(rng), 3.0, rng, 16000), 16000)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VOICEPRINT_MODEL": ""}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", CORE_ONLY, ",".join(sorted(allowed)), "compare", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["code"] in (0, 1), done.stderr  # accept or reject, never an error
    assert "score" in lines[0] and "threshold" in lines[0], done.stdout


@pytest.mark.parametrize(
    ("command", "missing", "extra"),
    [
        (
            ["evaluate-diarization", "--ref", "ref", "--hyp", "hyp"],
            "pyannote.metrics",
            "diarization",
        ),
        (["diarize", "talk.wav", "--out", "out"], "scipy", "diarization"),
        (["export", "--checkpoint", "x.pth", "--out", "x.onnx"], "onnxscript", "onnx"),
    ],
)
def test_a_command_without_its_extra_names_it(
    command: list[str], missing: str, extra: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # as if not installed
    monkeypatch.setenv("VOICEPRINT_MODEL", str(DEFAULT_MODEL))
    assert main(command) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and missing in err and f"pip install 'voiceprint[{extra}]'" in err
