"""Statistics over per-example results: intervals, paired tests, bootstrap, curves.

Pure functions over numbers and boolean arrays; no I/O, no models. Every function states the
method it implements, so a reader can check a number by hand.
"""
from __future__ import annotations

import math

import numpy as np

Z95 = 1.959963984540054  # two-sided 95 % normal quantile


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``k / n`` (95 % by default).

    Unlike the normal approximation it stays inside [0, 1] and is sensible at 0 % and 100 %.
    ``n == 0`` gives the uninformative interval (0, 1).
    """
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def wilson_of(acc: float, n: int) -> list[float]:
    """Wilson interval of an accuracy that was computed as ``k / n`` (``k`` recovered exactly)."""
    return list(wilson(int(round(acc * n)), n))


def mcnemar_exact(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value for discordant counts ``b`` (A only) and ``c`` (B only).

    Under the null each discordant pair is A-only with probability 1/2, so the p-value is
    ``min(1, 2 * P[Binomial(b + c, 1/2) <= min(b, c)])``.
    """
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired_bootstrap_diff(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0,
                          level: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``a - b`` over examples and its paired-bootstrap percentile interval.

    Args:
        a, b: per-example outcomes (bool or 0/1) on the same examples, in the same order.

    Returns:
        (difference, low, high). The same resampled example sets are used for both sides.
    """
    return bootstrap_mean(np.asarray(a, dtype=float) - np.asarray(b, dtype=float), n_boot, seed, level)


def bootstrap_mean(values: np.ndarray, n_boot: int = 2000, seed: int = 0,
                   level: float = 0.95) -> tuple[float, float, float]:
    """Mean of per-example ``values`` (e.g. the share of corruptions an image survives) and its
    bootstrap percentile interval over examples: (mean, low, high)."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return 0.0, 0.0, 0.0
    idx = np.random.default_rng(seed).integers(0, len(v), size=(n_boot, len(v)))
    lo, hi = np.quantile(v[idx].mean(axis=1), [(1 - level) / 2, (1 + level) / 2])
    return float(v.mean()), float(lo), float(hi)


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone), in the input order."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def bootstrap_rank_intervals(outcomes: np.ndarray, n_boot: int = 1000, seed: int = 0,
                             level: float = 0.95) -> list[tuple[int, int]]:
    """Each entry's rank interval (1 = best) over bootstrap resamples of the test set.

    Args:
        outcomes: ``(n_entries, n_examples)`` per-example robust outcomes on one test set; every
            resample draws one set of examples and ranks all entries on it.

    Returns:
        (best rank, worst rank) per entry, the percentile interval of its rank.
    """
    outcomes = np.asarray(outcomes, dtype=float)
    n_entries, n = outcomes.shape
    if n_entries == 0 or n == 0:
        return [(1, n_entries)] * n_entries
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    accs = np.stack([outcomes[:, rows].mean(axis=1) for rows in idx])  # (n_boot, n_entries)
    # Rank 1 is the highest accuracy; ties share the better rank.
    ranks = 1 + (accs[:, None, :] > accs[:, :, None]).sum(axis=2)
    lo = np.floor(np.quantile(ranks, (1 - level) / 2, axis=0)).astype(int)
    hi = np.ceil(np.quantile(ranks, (1 + level) / 2, axis=0)).astype(int)
    return [(int(a), int(b)) for a, b in zip(lo, hi)]


def spearman(x, y) -> float | None:
    """Spearman rank correlation (average ranks for ties); None when either side is constant."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2:
        return None
    rx, ry = _average_ranks(x), _average_ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def _average_ranks(v: np.ndarray) -> np.ndarray:
    order = np.argsort(v, kind="mergesort")
    ranks = np.empty(len(v))
    ranks[order] = np.arange(1, len(v) + 1)
    for value in np.unique(v):
        tied = v == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def monotone_envelope(acc: list[float]) -> list[float]:
    """The running minimum over increasing eps: accuracy can only fall as the budget grows."""
    out, low = [], math.inf
    for a in acc:
        low = min(low, a)
        out.append(low)
    return out


def eps_at_fraction(eps: list[float], acc: list[float], fraction: float = 0.5) -> float | None:
    """The eps at which a (monotone) curve first falls to ``fraction`` of its value at eps 0.

    Linear interpolation between grid points; None when the curve never gets that low.
    ``eps[0]`` must be 0 (the clean accuracy).
    """
    target = fraction * acc[0]
    for (e0, a0), (e1, a1) in zip(zip(eps, acc), zip(eps[1:], acc[1:])):
        if a1 <= target:
            return e1 if a0 == a1 else e0 + (a0 - target) / (a0 - a1) * (e1 - e0)
    return None


def normalised_auc(eps: list[float], acc: list[float]) -> float:
    """Trapezoid area under accuracy-versus-eps divided by the eps range: the mean accuracy
    over [0, max eps] (1.0 for a perfectly robust, perfectly accurate model)."""
    if len(eps) < 2 or eps[-1] <= eps[0]:
        return acc[0] if acc else 0.0
    area = sum((e1 - e0) * (a0 + a1) / 2 for e0, e1, a0, a1 in zip(eps, eps[1:], acc, acc[1:]))
    return area / (eps[-1] - eps[0])
