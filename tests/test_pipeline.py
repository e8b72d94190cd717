"""End to end through the CLI on the package's synthetic corpus: run, evaluate, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from voiceprint.artifact import read_model
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
            *BACKEND,
        ]
    )
    assert code == 0
    return exp / "xvector_gap_softmax"


# The shipped recipe's back-end on the tiny run, with the lab recipe's LDA: 2 of the 8
# training speakers held out for calibration; mean subtraction, LDA to 5 dimensions (6
# speakers span 5) and AS-norm over the other 6.
BACKEND = [
    "data.heldout_share=0.25",
    "eval.mean_subtract=true",
    "eval.lda_dim=5",
    "eval.asnorm_top=3",
    "eval.calibrate=true",
]


def test_run_writes_every_output(trained: Path) -> None:
    for name in (
        "model.pth",
        "train_state.pth",
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
    # It learnt its 6 training speakers; 6 speakers teach a 0.03M-parameter encoder little
    # that transfers, so on the 4 unseen test voices it only has to beat chance (an
    # untrained encoder scores 0.41-0.45 here, the trained one 0.30-0.38 across seeds).
    history = read_model(trained / "model.pth")["provenance"]["history"]
    assert len(history) == 8 and history[-1]["accuracy"] >= 0.75
    assert 0.0 <= results["eer"] < 0.45
    low, high = results["eer_ci95"]
    assert low <= results["eer"] <= high
    assert 0.0 <= results["min_dcf"] <= 1.0


def test_the_model_carries_its_scorer_and_evaluation(trained: Path) -> None:
    """Back-end from the 6 training speakers, calibration from the 2 held out, the dev
    figures it was measured at; the held-out speakers were never trained on."""
    embedder = Embedder.from_checkpoint(trained / "model.pth")
    results = json.loads((trained / "results.json").read_text())
    backend = embedder.scorer.backend
    assert backend.mean is not None and backend.cohort.shape[0] == 6
    assert embedder.scorer.calibrated and embedder.decision.rule == "bayes"
    heldout = set((trained / "data" / "calibration" / "utt2spk").read_text().split()[1::2])
    trained_on = set((trained / "data" / "train" / "utt2spk").read_text().split()[1::2])
    assert len(heldout) == 2 and not heldout & trained_on
    assert backend.provenance["speakers"] == 2
    assert embedder.evaluation["eer"] == results["eer"]
    assert results["backend"] == {
        "mean_subtract": True,
        "lda_dim": 5,
        "asnorm_top": 3,
        "cohort": 6,
        "calibrated": True,
    }
    assert results["act_dcf"] >= 0.0 and "act_dcf_ci95" in results


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


def test_backend_overrides_refit_the_back_end(trained: Path) -> None:
    from voiceprint.evaluation import evaluate

    overrides = [
        "eval.mean_subtract=false",
        "eval.lda_dim=0",
        "eval.asnorm_top=4",
        "eval.calibrate=false",
    ]
    results = evaluate(trained, overrides=overrides, progress=False)
    out = trained / "eval" / "mean_subtract=false_lda_dim=0_asnorm_top=4_calibrate=false"
    assert json.loads((out / "results.json").read_text())["eer"] == results["eer"]
    assert results["backend"] == {
        "mean_subtract": False,
        "lda_dim": 0,
        "asnorm_top": 4,
        "cohort": 6,
        "calibrated": False,
    }
    assert "act_dcf" not in results
    lines = [line.split() for line in (out / "scores.txt").read_text().splitlines()]
    false_accepts = sum(
        lab == "nontarget" and float(s) >= results["min_dcf_threshold"] for *_, s, lab in lines
    )
    for pair in results["confusable_pairs"]:
        assert 0 < pair["false_accepts"] <= pair["trials"]
        assert pair["share"] == pytest.approx(pair["false_accepts"] / false_accepts)
    assert results["raw_cosine"]["eer"] == pytest.approx(
        json.loads((trained / "results.json").read_text())["raw_cosine"]["eer"]
    )
    with pytest.raises(ValueError, match="eval.\\* overrides only"):
        evaluate(trained, overrides=["train.epochs=3"], progress=False)


def test_evaluate_only_reads_the_model(trained: Path) -> None:
    """The release wrote model.pth with its dev-set summary; evaluating the dev set again
    reproduces that summary and leaves the file byte for byte as it was."""
    model = trained / "model.pth"
    before = model.read_bytes()
    carried = read_model(model)["evaluation"]
    assert main(["evaluate", "--exp", str(trained), "--quiet"]) == 0
    assert model.read_bytes() == before
    again = json.loads((trained / "results.json").read_text())
    assert carried["eer"] == pytest.approx(again["eer"])
    assert carried["min_dcf"] == pytest.approx(again["min_dcf"])


def test_cli_evaluate_overrides_go_to_their_own_folder(trained: Path) -> None:
    before = (trained / "results.json").read_text()
    assert main(["evaluate", "--exp", str(trained), "--quiet", "eval.bootstrap=20"]) == 0
    assert (trained / "eval" / "bootstrap=20" / "results.json").is_file()
    assert (trained / "results.json").read_text() == before


def test_deployed_path_scores_as_evaluated(trained: Path, tmp_path: Path) -> None:
    """The acceptance of "what ships is what was measured": the exported ONNX model scored
    by ``voiceprint evaluate --model`` and through ``SpeakerDB.verify`` with one-clip
    enrollment give the same scores, and its metadata's EER is reproduced."""
    from voiceprint.data.corpus import read_kaldi_dir
    from voiceprint.embedder import OnnxEmbedder
    from voiceprint.store import SpeakerDB

    onnx_path = tmp_path / "model.onnx"
    checkpoint = trained / "model.pth"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(onnx_path)]) == 0
    out = tmp_path / "eval"
    argv = ["evaluate", "--model", str(onnx_path), "--data", str(trained / "data" / "test")]
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    model = OnnxEmbedder(onnx_path)
    results = json.loads((out / "results.json").read_text())
    assert results["eer"] == pytest.approx(model.evaluation["eer"], abs=2e-3)
    assert results["min_dcf"] == pytest.approx(model.evaluation["min_dcf"], abs=2e-2)

    utts = {u.utt: u for u in read_kaldi_dir(trained / "data" / "test")}
    emb = dict(zip(utts, model.embed_files([u.path for u in utts.values()]), strict=True))
    with SpeakerDB(":memory:", model.model_id, model.scorer) as db:
        for utt, vector in emb.items():
            db.enroll(utt, vector)  # one clip per "speaker"
        lines = (out / "scores.txt").read_text().splitlines()
        for line in lines[:: max(1, len(lines) // 200)]:
            enroll, test, score, _ = line.split()
            match = db.verify(enroll, emb[test])
            # scores.txt keeps 6 decimals; AS-norm of this tiny model reaches |s| ~ 100
            assert match.score == pytest.approx(float(score), rel=1e-6, abs=1e-5)
            assert match.llr == pytest.approx(float(model.scorer.llr(np.array([match.score]))[0]))


def test_open_set_identify_rejects_an_unenrolled_voice(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Enroll three test speakers; a fourth, never enrolled, comes out as "unknown"."""
    from voiceprint.data.corpus import by_speaker, read_kaldi_dir

    groups = by_speaker(read_kaldi_dir(trained / "data" / "test"))
    speakers = sorted(groups)
    common = ["--model", str(trained), "--db", str(tmp_path / "s.db")]
    for spk in speakers[:3]:
        clips = [str(u.path) for u in groups[spk][:3]]
        assert main(["enroll", spk, *clips, *common]) == 0
    capsys.readouterr()
    for probe in groups[speakers[3]][:3]:
        assert main(["identify", str(probe.path), *common]) == 1
        assert "identified: unknown (among 3 enrolled speaker(s))" in capsys.readouterr().out


def test_export_writes_an_int8_copy_calibrated_on_training_clips(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``export --int8-data``: OUT.int8.onnx next to OUT.onnx, calibrated on the training
    list's clips, with the same model id and back-end, and embeddings that agree with
    float32 (the cosine it prints and one measured here on the test clips)."""
    from voiceprint.data.corpus import read_kaldi_dir
    from voiceprint.embedder import OnnxEmbedder
    from voiceprint.scoring import verification

    out = tmp_path / "model.onnx"
    checkpoint = trained / "model.pth"
    argv = ["export", "--checkpoint", str(checkpoint), "--out", str(out)]
    assert main([*argv, "--int8-data", str(trained / "data" / "train"), "--int8-clips", "8"]) == 0
    printed = capsys.readouterr().out
    assert "int8, calibrated on 8 training clip(s)" in printed
    assert float(printed.split("cosine to float32 >= ")[1].split()[0]) >= 0.98
    fp32, int8 = OnnxEmbedder(out), OnnxEmbedder(tmp_path / "model.int8.onnx")
    assert (fp32.runner.precision, int8.runner.precision) == ("fp32", "int8")
    assert int8.model_id == fp32.model_id
    assert int8.scorer.backend.identity() == fp32.scorer.backend.identity()
    paths = [u.path for u in read_kaldi_dir(trained / "data" / "test")][:6]
    assert verification(fp32.embed_files(paths), int8.embed_files(paths)).min() >= 0.98
    assert main([*argv, "--int8-data", str(tmp_path / "missing")]) != 0
    assert "missing has no wav.scp" in capsys.readouterr().err
