"""Each statistic against a case computed by hand (or by simulation, for coverage)."""
import math

import numpy as np
import pytest

from advrp2k.analysis.stats import (bootstrap_rank_intervals, eps_at_fraction, holm, mcnemar_exact, monotone_envelope,
                                    normalised_auc, paired_bootstrap_diff, spearman, wilson)


def test_wilson_bounds_by_hand():
    # 8 of 10, z = 1.96: centre (0.8 + 0.19208) / 1.38416, half 1.96 * sqrt(0.016 + 0.009604) / 1.38416
    lo, hi = wilson(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    assert wilson(0, 20)[0] == 0.0 and wilson(0, 20)[1] == pytest.approx(0.1611, abs=1e-4)
    assert wilson(20, 20)[1] == 1.0 and wilson(20, 20)[0] == pytest.approx(0.8389, abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)


def test_exact_mcnemar_by_hand():
    # b = 1, c = 9: 2 * P[Bin(10, 1/2) <= 1] = 2 * (1 + 10) / 1024
    assert mcnemar_exact(1, 9) == pytest.approx(22 / 1024)
    assert mcnemar_exact(9, 1) == mcnemar_exact(1, 9)
    assert mcnemar_exact(5, 5) == 1.0 and mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01, max(0.03, 2 * 0.03), max(0.06, 1 * 0.04)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_paired_bootstrap_interval_covers_the_truth_in_a_simulation():
    """Two models with true accuracies 0.60 and 0.55 on correlated examples: the 95 % interval
    of the difference should cover 0.05 in about 95 % of simulated test sets."""
    rng = np.random.default_rng(0)
    covered, trials, n = 0, 200, 400
    for t in range(trials):
        u = rng.random(n)
        a, b = u < 0.60, u < 0.55  # paired: b is mostly correct where a is
        redraw = rng.random(n) < 0.1  # 10 % of b's outcomes drawn afresh (still P = 0.55)
        b = np.where(redraw, rng.random(n) < 0.55, b)
        true_diff = 0.60 - 0.55
        _, lo, hi = paired_bootstrap_diff(a, b, n_boot=400, seed=t)
        covered += lo <= true_diff <= hi
    assert 0.90 <= covered / trials <= 0.99


def test_bootstrap_rank_intervals_separate_clear_gaps_and_overlap_close_ones():
    rng = np.random.default_rng(1)
    n = 500
    u = rng.random(n)
    outcomes = np.stack([u < 0.80, u < 0.50, (u < 0.49) | (rng.random(n) < 0.01)])
    ranks = bootstrap_rank_intervals(outcomes, n_boot=300, seed=0)
    assert ranks[0] == (1, 1)  # far ahead
    assert ranks[1][0] == 2 and ranks[2][1] == 3 and ranks[1][1] >= 2


def test_envelope_half_eps_and_auc_by_hand():
    assert monotone_envelope([0.9, 0.5, 0.6, 0.2]) == [0.9, 0.5, 0.5, 0.2]
    eps = [0.0, 1.0, 2.0, 4.0]
    acc = [0.8, 0.6, 0.3, 0.1]
    # half of 0.8 is 0.4: between eps 1 (0.6) and 2 (0.3): 1 + (0.6 - 0.4) / 0.3
    assert eps_at_fraction(eps, acc) == pytest.approx(1 + 2 / 3)
    assert eps_at_fraction([0.0, 1.0], [0.8, 0.7]) is None
    # trapezoids: (0.8+0.6)/2 + (0.6+0.3)/2 + 2*(0.3+0.1)/2 = 0.7 + 0.45 + 0.4 = 1.55 over a range of 4
    assert normalised_auc(eps, acc) == pytest.approx(1.55 / 4)


def test_spearman_by_hand():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties get average ranks: x ranks 1, 2.5, 2.5, 4; y ranks 1, 2, 3, 4
    rx, ry = np.array([1, 2.5, 2.5, 4]), np.arange(1, 5)
    expected = float(np.corrcoef(rx, ry)[0, 1])
    assert spearman([5, 7, 7, 9], [1, 2, 3, 4]) == pytest.approx(expected)
    assert spearman([1, 1, 1], [1, 2, 3]) is None
    assert not math.isnan(expected)


def test_bootstrap_mean_interval_holds_the_mean_and_shrinks_with_more_examples():
    import numpy as np

    from advrp2k.analysis.stats import bootstrap_mean

    rng = np.random.default_rng(0)
    small, large = rng.integers(0, 11, 40) / 10, rng.integers(0, 11, 4000) / 10
    m, lo, hi = bootstrap_mean(small)
    assert lo < m < hi and m == small.mean()
    _, lo2, hi2 = bootstrap_mean(large)
    assert hi2 - lo2 < (hi - lo) / 5  # about 1/sqrt(100) of the width
    assert bootstrap_mean(np.ones(5))[1:] == (1.0, 1.0) and bootstrap_mean(np.array([])) == (0.0, 0.0, 0.0)
