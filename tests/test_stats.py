"""course_lib.stats against scipy and exact computations written here, independently of the code under test."""
import itertools
import math

import numpy as np
import pytest
import torch
from scipy import optimize, stats as scipy_stats

from course_lib import stats

SVHN_TEST_COUNTS = [1744, 5099, 4149, 2882, 2523, 2384, 1977, 2019, 1660, 1595]     # digits 0-9, 26,032 images


def pair(b: int, c: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image right/wrong of A and B on n images: A alone right on b, B alone right on c, the rest both wrong."""
    a, bb = torch.zeros(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)
    a[:b], bb[b:b + c] = True, True
    return a, bb


def exact_split_bounds(b: int, c: int, alpha: float = 0.05) -> tuple[float, float]:
    """Clopper-Pearson bounds for b successes out of b + c, from the binomial tails (root finding, not beta.ppf)."""
    m = b + c
    low = 0.0 if b == 0 else optimize.brentq(lambda p: scipy_stats.binom.sf(b - 1, m, p) - alpha / 2, 1e-12, 1 - 1e-12)
    high = 1.0 if c == 0 else optimize.brentq(lambda p: scipy_stats.binom.cdf(b, m, p) - alpha / 2, 1e-12, 1 - 1e-12)
    return low, high


# ----------------------------------------------------------------------------------------------------------------
# One accuracy

def test_wilson_interval_against_the_formula():
    for k, n in [(0, 10), (5, 10), (290, 870), (870, 870)]:
        p, z = k / n, scipy_stats.norm.ppf(0.975)
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        assert stats.wilson_interval(k, n) == pytest.approx((100 * (centre - half), 100 * (centre + half)))
    with pytest.raises(ValueError):
        stats.wilson_interval(11, 10)


def test_clopper_pearson_against_the_binomial_tails():
    for k, n in [(0, 10), (3, 10), (200, 10_000), (870, 870)]:
        low, high = exact_split_bounds(k, n - k)
        assert stats.clopper_pearson_interval(k, n) == pytest.approx((100 * low, 100 * high), abs=1e-6)


def test_chance_is_the_majority_class_share_when_the_class_counts_are_given():
    n = sum(SVHN_TEST_COUNTS)
    share = 100 * max(SVHN_TEST_COUNTS) / n                     # 19.6 %: the digit 1
    assert round(share, 1) == 19.6
    balanced = stats.accuracy_verdict("ViT", 19.7, n, 10)
    assert "chance" not in balanced                              # 1/10 alone would call 19.7 % a success
    words = stats.accuracy_verdict("ViT", 19.7, n, 10, class_counts=SVHN_TEST_COUNTS)
    assert "not distinguishable from chance (19.6 %, always answering the most common class, class 1)" in words
    named = stats.accuracy_verdict("ViT", 19.7, n, 10, class_counts={str(d): c for d, c in enumerate(SVHN_TEST_COUNTS)})
    assert "class, '1'" in named
    below = stats.accuracy_verdict("ViT", 15.0, n, 10, class_counts=SVHN_TEST_COUNTS)
    assert "below chance as the class balance sets it (19.6 %" in below
    assert "chance" not in stats.accuracy_verdict("ResNet-18", 57.5, 200, 10)
    assert "not distinguishable from chance (10 %, 1 in 10, assuming balanced classes)" in \
        stats.accuracy_verdict("ViT", 11.5, 200, 10)
    with pytest.raises(ValueError, match="class_counts"):
        stats.accuracy_verdict("ViT", 19.7, 1000, 10, class_counts=SVHN_TEST_COUNTS)


def test_far_below_chance_says_so_and_names_the_usual_bug():
    words = stats.accuracy_verdict("ViT", 2.0, 10_000, 10)
    assert "95 % CI 1.7 to 2.3" in words
    assert "below chance (10 %" in words and "label-order bug" in words and "not distinguishable" not in words


def test_nan_and_impossible_accuracies_are_refused():
    for bad in (150.0, -20.0, float("nan")):
        with pytest.raises(ValueError, match="accuracy|NaN"):
            stats.accuracy_verdict("ViT", bad, 200, 10)
        with pytest.raises(ValueError):
            stats.unpaired_difference(bad, 50.0, 200, 200)
    with pytest.raises(ValueError, match="NaN"):
        stats.seed_difference([50.0, float("nan")], [49.0, 48.0])
    with pytest.raises(ValueError, match="percent"):
        stats.seed_difference([150.0, 151.0], [49.0, 48.0], test_images=1000)
    with pytest.raises(ValueError, match="NaN"):
        stats.mean_interval([50.0, float("nan")])
    with pytest.raises(ValueError, match="not finite"):
        stats.Comparison("A", "B", float("nan"), float("nan"), float("nan"), "x")


# ----------------------------------------------------------------------------------------------------------------
# Paired: exact McNemar

def test_the_paired_verdict_agrees_with_the_exact_mcnemar_test():
    """Over every split of up to 59 + 59 disagreements on 1,000 images: the interval excludes 0 exactly when
    scipy's exact binomial test on the disagreements rejects, and the verdict says so."""
    for b in range(60):
        for c in range(60):
            comp = stats.paired_difference(*pair(b, c, 1000), "A", "B")
            rejects = b + c > 0 and scipy_stats.binomtest(b, b + c, 0.5).pvalue < 0.05
            assert (comp.low > 0 or comp.high < 0) == rejects, (b, c, comp)
            assert comp.significant == rejects and ("ahead of" in comp.words()) == rejects, (b, c)
            assert comp.difference == pytest.approx(100 * (b - c) / 1000)


def test_the_paired_interval_spans_the_exact_intervals_of_the_disagreement_rate_and_split():
    """The difference is q (2 pi - 1): its interval runs between the extremes of that over the exact intervals of
    q = (b + c)/n and pi = b/(b + c), found here by a brute-force grid over the two intervals."""
    for b, c, n in [(5, 0, 1000), (30, 12, 870), (3, 9, 200), (1, 0, 10), (40, 5, 870), (7, 7, 300)]:
        split, rate = exact_split_bounds(b, c), exact_split_bounds(b + c, n - b - c)
        q, pi = np.meshgrid(np.linspace(*rate, 401), np.linspace(*split, 401))
        values = 100 * q * (2 * pi - 1)
        comp = stats.paired_difference(*pair(b, c, n))
        assert (comp.low, comp.high) == pytest.approx((values.min(), values.max()), abs=1e-6)
        assert comp.p_value == pytest.approx(scipy_stats.binomtest(b, b + c, 0.5).pvalue)


def test_five_one_sided_disagreements_of_1000_are_not_a_lead():
    comp = stats.paired_difference(*pair(5, 0, 1000), "A", "B")
    words = comp.words()
    assert not comp.significant and words.startswith("A vs B: no difference that this test can detect (+0.5 points")
    assert "exact McNemar p = 0.0625" in words and "A alone right on 5, B alone on 0" in words
    rate_high = exact_split_bounds(5, 995)[1]            # up to 1.16 % of images could disagree
    assert comp.high == pytest.approx(100 * rate_high) and comp.high > 1.1


def test_a_single_seed_paired_verdict_says_what_its_interval_covers():
    words = stats.paired_difference(*pair(40, 5, 870), "ResNet-18", "ViT").words()
    assert words.startswith("ResNet-18 ahead of ViT by 4.0 points (95 % CI")
    assert words.endswith("; one seed: this interval covers the sampling of test images, not seed-to-seed variation")


def test_identical_predictions_give_the_exact_bound_that_the_rule_of_three_approximates():
    same = torch.rand(200) < 0.4
    c = stats.paired_difference(same, same.clone(), "ViT+DRLoc", "ViT")
    bound = 100 * (1 - 0.05 ** (1 / 200))          # P(no disagreement in 200 | rate) = 5 %; 3 / n = 1.5 points
    assert (c.difference, c.low, c.high) == (0.0, -bound, bound) and abs(bound - 1.5) < 0.02
    assert "identical predictions" in c.words()
    assert not c.significant


def test_one_model_right_on_every_image_is_a_lead_with_an_exact_interval():
    right, wrong = torch.ones(50, dtype=torch.bool), torch.zeros(50, dtype=torch.bool)
    c = stats.paired_difference(right, wrong, "ResNet-18", "ViT")
    bound = 0.025 ** (1 / 50)             # P(50 of 50 | x) = x^50 = 0.025: the lower end for both q and pi
    low = 100 * bound * (2 * bound - 1)
    assert (c.difference, c.low, c.high) == pytest.approx((100.0, low, 100.0)) and c.significant
    assert c.words().startswith(f"ResNet-18 ahead of ViT by 100.0 points (95 % CI {low:.1f} to 100.0")
    c = stats.paired_difference(wrong, right, "ViT", "ResNet-18")
    assert (c.low, c.high) == pytest.approx((-100.0, -low))
    assert c.words().startswith(f"ResNet-18 ahead of ViT by 100.0 points (95 % CI {low:.1f} to 100.0")


def test_three_images_give_an_honest_interval_not_plus_minus_50():
    right, wrong = torch.ones(3, dtype=torch.bool), torch.zeros(3, dtype=torch.bool)
    words = stats.paired_difference(right, wrong).words()
    assert "±" not in words and "no difference that this test can detect (+100.0 points, 95 % CI -41.5 to 100.0" \
        in words and "p = 0.25" in words


def test_paired_difference_wants_right_wrong_not_predictions_or_probabilities():
    labels = torch.tensor([0, 3, 7, 7, 1])
    with pytest.raises(ValueError, match="predictions == labels"):
        stats.paired_difference(torch.tensor([0, 3, 2, 7, 1]), torch.tensor([0, 1, 7, 7, 9]))
    with pytest.raises(ValueError, match="right/wrong"):
        stats.paired_difference(torch.rand(5), torch.rand(5))
    ok = stats.paired_difference((torch.tensor([0, 3, 2, 7, 1]) == labels).int(), torch.tensor([1, 1, 0, 0, 1]))
    assert ok.difference == pytest.approx(20.0)


def test_verdicts_in_words():
    ahead = stats.Comparison("ResNet-18", "ViT", 13.5, 9.8, 17.2, "paired over 870 test images")
    assert ahead.significant and ahead.words().startswith("ResNet-18 ahead of ViT by 13.5 points (95 % CI 9.8 to 17.2")
    behind = stats.Comparison("ViT+DRLoc", "ViT", -4.0, -6.0, -2.0, "x")
    assert behind.words().startswith("ViT ahead of ViT+DRLoc by 4.0 points (95 % CI 2.0 to 6.0")
    none = stats.Comparison("ViT+DRLoc", "ViT", -1.3, -4.2, 1.6, "paired over 870 test images")
    assert not none.significant and "no difference that this test can detect (-1.3 ± 2.9 points" in none.words()
    assert not stats.Comparison("A", "B", 0.5, 0.5, 0.5, "x").significant          # zero width: never a verdict


# ----------------------------------------------------------------------------------------------------------------
# Seeds

def test_seed_intervals_against_scipy():
    a, b = [70.1, 71.3, 69.8], [60.2, 62.0, 61.1]
    c = stats.seed_difference(a, b, "A", "B", paired=True)
    d = np.subtract(a, b)
    low, high = scipy_stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=scipy_stats.sem(d))
    assert (c.low, c.high) == pytest.approx((low, high))
    assert not c.significant and "the seeds alone cannot tell" in c.words()      # no test_images: no verdict
    welch = stats.seed_difference(a, b, paired=False)
    t = scipy_stats.ttest_ind(a, b, equal_var=False)
    assert welch.difference / ((welch.high - welch.difference) / scipy_stats.t.ppf(0.975, t.df)) == \
        pytest.approx(t.statistic)
    mean, lo, hi = stats.mean_interval(a)
    assert (lo, hi) == pytest.approx(scipy_stats.t.interval(0.95, 2, loc=np.mean(a), scale=scipy_stats.sem(a)))


def binomial_var(acc: float, n: int) -> float:
    """Test-set variance of one accuracy in points squared, p shrunk by one right and one wrong answer."""
    p = (acc / 100 * n + 1) / (n + 2)
    return 1e4 * p * (1 - p) / n


def test_seeds_with_zero_spread_get_the_test_set_variance_not_a_zero_width_interval():
    a, b = [50, 51.5, 49], [49.5, 51, 48.5]
    alone = stats.seed_difference(a, b)
    assert not alone.significant and "ahead" not in alone.words()
    c = stats.seed_difference(a, b, test_images=10_000)
    half = scipy_stats.norm.ppf(0.975) * math.sqrt(binomial_var(np.mean(a), 10_000) + binomial_var(np.mean(b), 10_000))
    assert (c.low, c.high) == pytest.approx((0.5 - half, 0.5 + half))
    assert not c.significant and "seed-to-seed variation and the sampling of test images" in c.words()


def test_seeds_with_spread_combine_both_variances_satterthwaite():
    a, b, n = [70.1, 71.3, 69.8], [60.2, 62.0, 61.1], 870
    d = np.subtract(a, b)
    v_seed, v_test = d.var(ddof=1) / 3, binomial_var(np.mean(a), n) + binomial_var(np.mean(b), n)
    df = (v_seed + v_test) ** 2 / (v_seed ** 2 / 2)
    half = scipy_stats.t.ppf(0.975, df) * math.sqrt(v_seed + v_test)
    c = stats.seed_difference(a, b, test_images=n)
    assert (c.low, c.high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert c.p_value == pytest.approx(2 * scipy_stats.t.sf(d.mean() / math.sqrt(v_seed + v_test), df))
    mean, lo, hi = stats.mean_interval(a, test_images=n)
    v = np.var(a, ddof=1) / 3
    total = v + binomial_var(mean, n)
    half = scipy_stats.t.ppf(0.975, total ** 2 / (v ** 2 / 2)) * math.sqrt(total)
    assert (lo, hi) == pytest.approx((mean - half, mean + half))


# ----------------------------------------------------------------------------------------------------------------
# Families and rank correlation

def test_holm_adjust_against_values_computed_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    assert stats.holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # 0.2 * 3 = 0.6, 0.5 * 2 = 1.0, 0.9 * 1 -> 1.0 (running max), capped at 1
    assert stats.holm_adjust([0.2, 0.5, 0.9]) == pytest.approx([0.6, 1.0, 1.0])
    assert stats.holm_adjust([0.04]) == pytest.approx([0.04]) and stats.holm_adjust([]) == []
    with pytest.raises(ValueError):
        stats.holm_adjust([0.1, float("nan")])


def test_holm_verdicts_say_their_family_and_use_the_adjusted_p():
    pairs = [(14, 4), (40, 2)] + [(5, 5)] * 5               # p = 0.031 (ahead alone), p < 1e-9, five ties
    alone = [stats.paired_difference(*pair(b, c, 870), f"setting {i}", "no DRLoc") for i, (b, c) in enumerate(pairs)]
    assert alone[0].significant
    family = stats.holm_verdicts(alone)
    p = [scipy_stats.binomtest(b, b + c, 0.5).pvalue for b, c in pairs]
    assert [c.adjusted_p for c in family] == pytest.approx(stats.holm_adjust(p))
    assert not family[0].significant and family[1].significant
    assert "Holm-adjusted over 7 comparisons" in family[0].words() and "no difference" in family[0].words()
    assert family[1].words().startswith("setting 1 ahead of no DRLoc")


def spearman_by_enumeration(x, y):
    """Two-sided p: the share of all orderings of y whose |rho| reaches the observed, with scipy's rho each time."""
    observed = abs(scipy_stats.spearmanr(x, y).statistic)
    rhos = [abs(scipy_stats.spearmanr(x, perm).statistic) for perm in itertools.permutations(y)]
    return np.mean(np.array(rhos) >= observed - 1e-12)


def test_spearman_is_exact_for_few_blocks():
    rho, p = stats.spearman(range(6), [1, 0, 3, 2, 5, 4])
    assert rho == pytest.approx(0.8286, abs=1e-4) and p == pytest.approx(spearman_by_enumeration(range(6),
                                                                                                  [1, 0, 3, 2, 5, 4]))
    assert p > 0.05 > scipy_stats.spearmanr(range(6), [1, 0, 3, 2, 5, 4]).pvalue    # the t approximation says 0.042
    ties = [0, 1, 2, 2, 2, 2, 1]
    assert stats.spearman(range(7), ties)[1] == pytest.approx(spearman_by_enumeration(range(7), ties))
    many = [0, 1, 2, 2, 3, 3, 3, 3, 3, 4, 4, 5]
    assert stats.spearman(range(12), many) == pytest.approx(tuple(scipy_stats.spearmanr(range(12), many)))
    with pytest.raises(ValueError, match="constant"):
        stats.spearman(range(5), [2] * 5)


def test_sign_flip_p_is_the_share_of_sign_assignments_at_least_as_extreme():
    import itertools

    from course_lib.stats import sign_flip_p

    for d in ([1.0, 2.0, 3.0], [0.3, -0.1, 0.2, 0.5], [1.0, -1.0], [2.0, 0.5, -0.4, 1.1, 0.9]):
        flips = [abs(sum(s * x for s, x in zip(signs, d))) for signs in itertools.product((1, -1), repeat=len(d))]
        assert sign_flip_p(d) == pytest.approx(sum(f >= abs(sum(d)) - 1e-12 for f in flips) / len(flips))
    assert sign_flip_p([1.0, 2.0, 3.0]) == 0.25 and sign_flip_p([1.0] * 6) == pytest.approx(2 / 64)
    with pytest.raises(ValueError, match="1 to 20 differences"):
        sign_flip_p([])
