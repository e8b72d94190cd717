"""Metrics: hand-computed EER/minDCF, agreement with scikit-learn, speaker bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

from voiceprint import metrics
from voiceprint.metrics import bootstrap

sklearn_metrics = pytest.importorskip("sklearn.metrics")

# Sorted: .9T .7N .6T .4T .3N .2N .1N  (3 targets, 4 non-targets)
TAR = [0.9, 0.6, 0.4]
NON = [0.7, 0.3, 0.2, 0.1]


def _trials(n_spk: int, n_utt: int, seed: int) -> tuple[np.ndarray, ...]:
    """All utterance pairs of ``n_spk`` speakers with speaker-dependent score offsets."""
    rng = np.random.default_rng(seed)
    spk = np.repeat(np.arange(n_spk), n_utt)
    i, j = np.triu_indices(spk.size, 1)
    a, b = spk[i], spk[j]
    labels = (a == b).astype(int)
    offset = rng.normal(size=n_spk)
    scores = rng.normal(size=a.size) + 2.0 * labels + 0.6 * (offset[a] + offset[b])
    return scores, labels, a, b


def test_eer_hand_computed_with_interpolation() -> None:
    # Points (FAR, FRR): inf (0, 1), .9 (0, 2/3), .7 (1/4, 2/3), .6 (1/4, 1/3), .4 (1/4, 0).
    # FRR - FAR goes from 1/12 at .6 to -1/4 at .4: a = (1/12) / (1/12 + 1/4) = 1/4,
    # EER = 1/4 + a * 0 = 0.25 (= FRR 1/3 - a/3), threshold = .6 + a * (.4 - .6) = .55.
    value, threshold = metrics.eer(TAR, NON)
    assert value == pytest.approx(0.25)
    assert threshold == pytest.approx(0.55)


def test_eer_exact_crossing() -> None:
    # .8T .6N .4T .2N: at .6, FAR = FRR = 1/2 exactly.
    assert metrics.eer([0.8, 0.4], [0.6, 0.2]) == pytest.approx((0.5, 0.6))


def test_eer_perfect_separation_and_inversion() -> None:
    value, threshold = metrics.eer([2.0, 3.0, 5.0], [-1.0, 0.0, 1.0])
    assert value == 0.0
    assert threshold == 2.0  # lowest target score: accepts all targets, no non-target
    assert metrics.eer([-1.0, 0.0], [1.0, 2.0])[0] == pytest.approx(1.0)


def test_eer_all_tied_is_half() -> None:
    assert metrics.eer([1.0, 1.0], [1.0, 1.0, 1.0])[0] == pytest.approx(0.5)


def test_get_eer_matches_eer_and_validates() -> None:
    scores = np.array(TAR + NON)
    labels = np.array([1] * 3 + [0] * 4)
    assert metrics.get_eer(scores, labels) == metrics.eer(TAR, NON)
    with pytest.raises(ValueError, match="target"):
        metrics.get_eer(scores, np.ones(7))
    with pytest.raises(ValueError, match="0 .non-target. or 1"):
        metrics.get_eer(scores, np.full(7, 2))
    with pytest.raises(ValueError, match="NaN"):
        metrics.eer([np.nan], [0.0])
    with pytest.raises(ValueError, match="empty"):
        metrics.eer([], [0.0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 400)
    scores = np.round(rng.normal(size=400) + labels, 1)  # many ties
    fpr, tpr, thr = metrics.roc(scores, labels)
    ref_fpr, ref_tpr, ref_thr = sklearn_metrics.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(tpr, ref_tpr)
    np.testing.assert_array_equal(thr, ref_thr)
    assert metrics.auc(fpr, tpr) == pytest.approx(sklearn_metrics.roc_auc_score(labels, scores))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_eer_at_sklearn_fpr_fnr_crossing(seed: int) -> None:
    rng = np.random.default_rng(seed)
    tar = np.round(rng.normal(1.5, 1.0, 300), 2)
    non = np.round(rng.normal(0.0, 1.0, 2000), 2)
    value, threshold = metrics.eer(tar, non)
    labels = np.r_[np.ones(tar.size), np.zeros(non.size)]
    fpr, tpr, thr = sklearn_metrics.roc_curve(labels, np.r_[tar, non], drop_intermediate=False)
    fnr = 1 - tpr
    i = int(np.flatnonzero(fnr - fpr <= 0)[0])
    # The EER lies between the two bracketing sklearn points ...
    assert min(fpr[i - 1], fnr[i]) - 1e-12 <= value <= max(fpr[i], fnr[i - 1]) + 1e-12
    # ... exactly where the straight line between them has FPR == FNR.
    d0, d1 = fnr[i - 1] - fpr[i - 1], fnr[i] - fpr[i]
    a = d0 / (d0 - d1)
    assert value == pytest.approx(fpr[i - 1] + a * (fpr[i] - fpr[i - 1]))
    assert value == pytest.approx(fnr[i - 1] + a * (fnr[i] - fnr[i - 1]))
    assert threshold == pytest.approx(thr[i - 1] + a * (thr[i] - thr[i - 1]))
    # The empirical error rates at that threshold straddle the EER.
    far, frr = np.mean(non >= threshold), np.mean(tar < threshold)
    assert min(far, frr) - 1e-9 <= value <= max(far, frr) + 1e-9


def test_min_dcf_hand_computed() -> None:
    # p = 0.25: DCF = .25 FRR + .75 FAR, normaliser .25.
    # inf: .25 -> 1;  .9: .25*2/3 -> 2/3;  .7: 1/6 + 3/16 -> 17/12;  .6: 1/12 + 3/16 -> 13/12
    value, threshold = metrics.min_dcf(TAR, NON, p_target=0.25)
    assert value == pytest.approx(2 / 3)
    assert threshold == 0.9
    # c_miss = 3, p = 0.25: DCF = .75 FRR + .75 FAR, normaliser .75: min over FRR + FAR.
    # .4: FRR 0 + FAR 1/4 = 1/4 is the minimum.
    value, threshold = metrics.min_dcf(TAR, NON, p_target=0.25, c_miss=3.0)
    assert value == pytest.approx(0.25)
    assert threshold == 0.4


def test_min_dcf_reject_all_and_bounds() -> None:
    # Useless scores at a low prior: rejecting everything is best, DCF 1.
    value, threshold = metrics.min_dcf([0.0], [1.0], p_target=0.01)
    assert value == pytest.approx(1.0)
    assert threshold > 1.0 and np.isfinite(threshold)
    assert metrics.min_dcf([1.0, 2.0], [0.0], p_target=0.01)[0] == 0.0
    with pytest.raises(ValueError, match="p_target"):
        metrics.min_dcf(TAR, NON, p_target=1.0)


def test_det_curve_consistent_with_roc() -> None:
    far, frr, thr = metrics.det_curve(TAR, NON)
    fpr, tpr, thr2 = metrics.roc(TAR + NON, [1] * 3 + [0] * 4)
    np.testing.assert_allclose(far, fpr)
    np.testing.assert_allclose(frr, 1 - tpr)
    np.testing.assert_array_equal(thr, thr2)
    assert far[0] == 0 and frr[0] == 1 and far[-1] == 1 and frr[-1] == 0
    assert np.all(np.diff(far) >= 0) and np.all(np.diff(frr) <= 0)


def test_threshold_at_far() -> None:
    non = np.array([0.1, 0.5, 0.5, 0.9, 0.3])
    t = metrics.threshold_at_far(non, 0.2)  # one false accept allowed out of five
    assert 0.5 < t < 0.9 and np.mean(non >= t) == pytest.approx(0.2)
    t = metrics.threshold_at_far(non, 0.4)  # two allowed, but .5 is tied twice with .9 above
    assert np.mean(non >= t) <= 0.4 and t == pytest.approx(0.5)
    assert metrics.threshold_at_far(non, 0.0) > 0.9
    assert metrics.threshold_at_far(non, 1.0) == 0.1
    with pytest.raises(ValueError, match="far"):
        metrics.threshold_at_far(non, 1.5)


def test_confusable_pairs_counts_false_accepts_per_unordered_pair() -> None:
    scores = [0.9, 0.8, 0.7, 0.6, 0.95, 0.2, 0.5]
    labels = [0, 0, 0, 0, 1, 0, 0]
    spk_a = ["B", "A", "C", "A", "A", "B", "C"]
    spk_b = ["A", "B", "A", "C", "A", "C", "B"]
    # At 0.6: false accepts B-A, A-B (one pair, 2), C-A, A-C (another, 2); 0.95 is a target.
    out = metrics.confusable_pairs(scores, labels, spk_a, spk_b, threshold=0.6)
    assert [p["speakers"] for p in out] == [["A", "B"], ["A", "C"]]  # tie: by name
    assert [p["false_accepts"] for p in out] == [2, 2]
    assert [p["trials"] for p in out] == [2, 2]
    assert sum(p["share"] for p in out) == pytest.approx(1.0)
    out = metrics.confusable_pairs(scores, labels, spk_a, spk_b, threshold=0.75, top=1)
    assert out == [{"speakers": ["A", "B"], "false_accepts": 2, "trials": 2, "share": 1.0}]
    assert metrics.confusable_pairs(scores, labels, spk_a, spk_b, threshold=1.0) == []
    with pytest.raises(ValueError, match="speaker pair"):
        metrics.confusable_pairs(scores, labels, spk_a[:3], spk_b, threshold=0.5)


def test_summarize_keys_and_types() -> None:
    out = metrics.summarize(TAR, NON, p_target=0.25)
    assert out["eer"] == pytest.approx(0.25)
    assert out["min_dcf"] == pytest.approx(2 / 3)
    assert out["n_target"] == 3 and out["n_nontarget"] == 4
    assert {"eer_threshold", "min_dcf_threshold"} <= out.keys()
    assert all(isinstance(v, int | float) for v in out.values())


def test_resampled_figures_equal_those_of_replicated_trials() -> None:
    """Each resample's EER, minDCF and actual DCF are those of its trials written out
    (the weight of each trial as that many copies), and so are weighted_summary's."""
    scores, labels, a, b = _trials(8, 4, seed=3)
    scores = np.round(scores, 1)  # ties across classes
    llr = scores - 1.5
    rng = np.random.default_rng(0)
    counts = rng.multinomial(8, np.full(8, 1 / 8), size=6)
    counts[0] = 1  # the original sample
    accept = llr >= metrics.bayes_threshold(0.1)
    got = bootstrap.resampled_figures(scores, a, b, counts, 0.1, accept)
    for i, row in enumerate(counts):
        weight = np.where(a == b, row[a], row[a] * row[b])
        s, lab, lr = (np.repeat(x, weight) for x in (scores, labels == 1, llr))
        ref = {
            "eer": metrics.eer(s[lab], s[~lab])[0],
            "min_dcf": metrics.min_dcf(s[lab], s[~lab], 0.1)[0],
            "act_dcf": metrics.act_dcf(lr[lab], lr[~lab], 0.1),
        }
        assert {k: got[k][i] for k in ref} == pytest.approx(ref, abs=1e-12)
        pooled = metrics.weighted_summary(scores, labels, weight, 0.1, llr)
        assert pooled == pytest.approx(ref, abs=1e-12)


def test_weighted_summary_validates_weights() -> None:
    scores, labels = np.array(TAR + NON), np.array([1] * 3 + [0] * 4)
    with pytest.raises(ValueError, match="non-negative"):
        metrics.weighted_summary(scores, labels, -np.ones(7))
    with pytest.raises(ValueError, match="positive weight"):
        metrics.weighted_summary(scores, labels, np.r_[np.zeros(3), np.ones(4)])


def test_bootstrap_contains_estimate_and_narrows() -> None:
    widths = []
    for n_spk in (15, 60):
        scores, labels, a, b = _trials(n_spk, 4, seed=n_spk)
        point = metrics.get_eer(scores, labels)[0]
        low, high = metrics.bootstrap_eer(scores, labels, a, b, n_boot=300, seed=1)
        assert low <= point <= high
        widths.append(high - low)
    assert widths[1] < 0.75 * widths[0]


def test_bootstrap_is_seeded_and_validates() -> None:
    scores, labels, a, b = _trials(10, 3, seed=0)
    names_a = np.array([f"spk{x}" for x in a])
    names_b = np.array([f"spk{x}" for x in b])
    first = metrics.bootstrap_eer(scores, labels, names_a, names_b, n_boot=50, seed=7)
    assert first == metrics.bootstrap_eer(scores, labels, names_a, names_b, n_boot=50, seed=7)
    with pytest.raises(ValueError, match="disagree"):
        metrics.bootstrap_eer(scores, 1 - labels, a, b, n_boot=10)
    with pytest.raises(ValueError, match="must match"):
        metrics.bootstrap_eer(scores, labels, a[:-1], b, n_boot=10)


def test_bootstrap_interval_holds_the_eer_on_19900_trials() -> None:
    """The interval brackets the full-set EER (its speed: benchmarks/metrics_speed.py)."""
    scores, labels, a, b = _trials(20, 10, seed=0)  # 200 utterances -> 19,900 trials
    assert scores.size == 19900
    low, high = metrics.bootstrap_eer(scores, labels, a, b, n_boot=1000)
    value, _ = metrics.eer(scores[labels == 1], scores[labels == 0])
    assert 0 < low < value < high < 0.5


def test_paired_bootstrap_of_a_system_against_itself_and_a_better_one() -> None:
    """Against itself: every difference is 0. A system with the same speaker offsets but
    less trial noise: the whole-set differences are those of eer() and min_dcf(), and
    the paired interval lies below 0 although the two separate EER intervals overlap
    (the shared speaker offsets cancel in the pairing)."""
    scores, labels, a, b = _trials(20, 10, seed=3)
    same = metrics.paired_bootstrap(scores, scores, labels, a, b, n_boot=200)
    assert same == {"eer": (0.0, 0.0, 0.0), "min_dcf": (0.0, 0.0, 0.0)}
    rng = np.random.default_rng(4)
    better = scores + 0.35 * labels + 0.3 * rng.normal(size=scores.size)
    got = metrics.paired_bootstrap(scores, better, labels, a, b, n_boot=300, seed=1)
    lab = labels == 1
    eer_x, eer_y = (
        metrics.eer(scores[lab], scores[~lab])[0],
        metrics.eer(better[lab], better[~lab])[0],
    )
    assert got["eer"][0] == pytest.approx(eer_y - eer_x)
    dcf_y = metrics.min_dcf(better[lab], better[~lab])[0]
    assert got["min_dcf"][0] == pytest.approx(dcf_y - metrics.min_dcf(scores[lab], scores[~lab])[0])
    assert got["eer"][1] <= got["eer"][0] <= got["eer"][2] < 0.0
    low_x, high_x = metrics.bootstrap_eer(scores, labels, a, b, n_boot=300, seed=1)
    low_y, high_y = metrics.bootstrap_eer(better, labels, a, b, n_boot=300, seed=1)
    assert low_x < high_y  # the separate intervals overlap
    swapped = metrics.paired_bootstrap(better, scores, labels, a, b, n_boot=300, seed=1)
    assert swapped["eer"] == pytest.approx((-got["eer"][0], -got["eer"][2], -got["eer"][1]))
    with pytest.raises(ValueError, match="same trials"):
        metrics.paired_bootstrap(scores[:-1], scores, labels, a, b)


def test_lab_doc_worked_example() -> None:
    """The EER example worked by hand in docs/lab.md (section 6, step 5)."""
    value, threshold = metrics.eer([0.9, 0.8, 0.4], [0.7, 0.5, 0.3, 0.2])
    assert value == pytest.approx(1 / 3)
    assert threshold == pytest.approx(0.7 + (0.5 - 0.7) / 3)


def test_report_is_the_block_of_its_parts() -> None:
    """report() = summarize + bootstrap_eer + bootstrap_dcf + act_dcf, with the given
    resample counts and one seed; n_boot=0 / n_boot_dcf=0 leave the intervals out."""
    scores, labels, a, b = _trials(8, 5, seed=4)
    llr = 3.0 * scores - 5.0
    out = metrics.report(scores, labels, a, b, 0.05, llr, n_boot=300, seed=7, n_boot_dcf=50)
    lab = labels.astype(bool)
    assert {k: out[k] for k in metrics.summarize(scores[lab], scores[~lab], 0.05)} == (
        metrics.summarize(scores[lab], scores[~lab], 0.05)
    )
    assert out["eer_ci95"] == list(metrics.bootstrap_eer(scores, labels, a, b, 300, seed=7))
    ci = metrics.bootstrap_dcf(scores, labels, a, b, 0.05, llr=llr, n_boot=50, seed=7)
    assert out["min_dcf_ci95"] == list(ci["min_dcf"])
    assert out["act_dcf_ci95"] == list(ci["act_dcf"])
    assert out["act_dcf"] == metrics.act_dcf(llr[lab], llr[~lab], 0.05)
    plain = metrics.report(scores, labels, a, b, 0.05, n_boot=300, seed=7, n_boot_dcf=0)
    assert "min_dcf_ci95" not in plain and "act_dcf" not in plain
    assert plain["eer_ci95"] == out["eer_ci95"]
    uncalibrated = metrics.report(scores, labels, a, b, 0.05, n_boot=20, n_boot_dcf=20)
    assert "min_dcf_ci95" in uncalibrated and "act_dcf_ci95" not in uncalibrated
    bare = metrics.report(scores, labels, a, b, 0.05, llr, n_boot=0, n_boot_dcf=0)
    assert bare == {k: v for k, v in out.items() if not k.endswith("_ci95")}  # no intervals
    with pytest.raises(ValueError, match="llr"):
        metrics.report(scores, labels, a, b, 0.05, llr[:-1], n_boot=20, n_boot_dcf=0)
