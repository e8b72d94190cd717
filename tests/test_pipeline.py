"""End to end through the CLI on the package's synthetic corpus: run, evaluate, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voiceprint.cli import main
from voiceprint.embedder import Embedder

from .test_training import TINY

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def trained(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    exp = tmp_path_factory.mktemp("exp")
    code = main(
        [
            "run",
            "--config",
            str(CONFIGS / "xvector_gap_softmax.yaml"),
            "--root",
            str(synthetic_root),
            "--quiet",
            f"exp_dir={exp}",
            "train.epochs=8",
            *TINY,
        ]
    )
    assert code == 0
    return exp / "xvector_gap_softmax"


def test_run_writes_every_output(trained: Path) -> None:
    for name in (
        "xvector_gap_softmax_checkpoint.pth",
        "config.yaml",
        "training.png",
        "results.json",
        "scores.txt",
        "roc.png",
        "det.png",
        "scores.png",
    ):
        assert (trained / name).stat().st_size > 0, name
    results = json.loads((trained / "results.json").read_text())
    assert results["n_target"] + results["n_nontarget"] == len(
        (trained / "scores.txt").read_text().splitlines()
    )
    assert 0.0 <= results["eer"] < 0.35  # synthetic voices are separable after training
    low, high = results["eer_ci95"]
    assert low <= results["eer"] <= high
    assert 0.0 <= results["min_dcf"] <= 1.0


def test_threshold_is_stored_with_the_model(trained: Path) -> None:
    embedder = Embedder.from_checkpoint(trained / "xvector_gap_softmax_checkpoint.pth")
    results = json.loads((trained / "results.json").read_text())
    assert embedder.decision is not None
    assert embedder.decision.threshold == pytest.approx(results["eer_threshold"])


def test_evaluate_enroll_trials_elsewhere(
    trained: Path, synthetic_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "evaluate",
                "--exp",
                str(trained),
                "--trials",
                "enroll",
                "--quiet",
                "--root",
                str(synthetic_root),
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed["n_target"] > 0
    assert (trained / "eval" / synthetic_root.name / "results.json").is_file()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["prepare", "--root", "/no/such/corpus"], "corpus root /no/such/corpus does not exist"),
        (["prepare", "train.epoch=3"], "unknown config key 'train.epoch'"),
        (["evaluate", "--exp", "/no/such/exp"], "experiment /no/such/exp does not exist"),
    ],
)
def test_errors_are_one_clear_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_backend_mean_asnorm_calibration(trained: Path) -> None:
    from voiceprint.evaluation import evaluate

    overrides = ["eval.mean_subtract=true", "eval.asnorm_top=4", "eval.calibrate=true"]
    results = evaluate(trained, overrides=overrides, progress=False)
    out = trained / "eval" / "mean_subtract=true_asnorm_top=4_calibrate=true"
    assert json.loads((out / "results.json").read_text())["eer"] == results["eer"]
    assert results["backend"] == {"mean_subtract": True, "asnorm_top": 4, "calibrate": True}
    assert results["calibration"]["scale"] > 0
    assert results["act_dcf"] >= 0.0
    lines = [line.split() for line in (out / "scores.txt").read_text().splitlines()]
    false_accepts = sum(
        lab == "nontarget" and float(s) >= results["min_dcf_threshold"] for *_, s, lab in lines
    )
    for pair in results["confusable_pairs"]:
        assert 0 < pair["false_accepts"] <= pair["trials"]
        assert pair["share"] == pytest.approx(pair["false_accepts"] / false_accepts)
    assert results["raw_cosine"]["eer"] == pytest.approx(
        json.loads((trained / "results.json").read_text())["eer"]
    )
    with pytest.raises(ValueError, match="eval.\\* overrides only"):
        evaluate(trained, overrides=["train.epochs=3"], progress=False)


def test_cli_evaluate_overrides_go_to_their_own_folder(trained: Path) -> None:
    before = (trained / "results.json").read_text()
    assert main(["evaluate", "--exp", str(trained), "--quiet", "eval.bootstrap=20"]) == 0
    assert (trained / "eval" / "bootstrap=20" / "results.json").is_file()
    assert (trained / "results.json").read_text() == before
