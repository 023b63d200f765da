"""Statistics of the study, with numpy only: Spearman's rank correlation, bootstrap intervals.

- ``bootstrap_scores``: corpus BLEU / chrF / TER with 95% intervals from resampling test items
  (sacrebleu's sufficient statistics, so each resample is a true corpus score);
- ``paired_bootstrap``: sacrebleu's paired bootstrap test of one system against a baseline;
- ``spearman`` and ``spearman_interval``: rank correlation (ties get their mean rank) and a
  bootstrap interval over the pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from training.common.metrics import reference_streams

CONFIDENCE = 0.95


def _metrics() -> dict[str, Any]:
    from sacrebleu.metrics import BLEU, CHRF, TER

    return {"bleu": BLEU(), "chrf": CHRF(), "ter": TER()}


def _item_refs(streams: list[list[str | None]], i: int) -> list[str]:
    return [s[i] for s in streams if s[i] is not None]  # type: ignore[misc]


def bootstrap_scores(
    hypotheses: Sequence[str], references: Sequence[Sequence[str]], samples: int = 1000, seed: int = 0
) -> dict[str, dict[str, float]]:
    """{metric: {"score", "low", "high"}} for BLEU, chrF and TER: the corpus score and the 2.5/97.5
    percentiles of ``samples`` resamples of the test items (with replacement)."""
    streams = reference_streams(references)
    rng = np.random.default_rng(seed)
    n = len(hypotheses)
    draws = rng.integers(0, n, size=(samples, n))
    out: dict[str, dict[str, float]] = {}
    for name, metric in _metrics().items():
        stats = np.array(
            [
                metric._extract_corpus_statistics([h], [[r] for r in _item_refs(streams, i)])[0]
                for i, h in enumerate(hypotheses)
            ],
            dtype=float,
        )  # (N, S): per-item sufficient statistics
        score = metric._compute_score_from_stats(list(stats.sum(0))).score
        boot = [metric._compute_score_from_stats(list(stats[d].sum(0))).score for d in draws]
        low, high = np.percentile(boot, [100 * (1 - CONFIDENCE) / 2, 100 * (1 + CONFIDENCE) / 2])
        out[name] = {"score": float(score), "low": float(low), "high": float(high)}
    return out


def paired_bootstrap(
    baseline: Sequence[str], system: Sequence[str], references: Sequence[Sequence[str]], samples: int = 1000
) -> dict[str, dict[str, float]]:
    """sacrebleu's paired bootstrap (``PairedTest``, test_type "bs") of ``system`` against ``baseline``
    on BLEU and chrF: {metric: {"baseline", "system", "system_low", "system_high", "p_value"}}."""
    from sacrebleu.metrics import BLEU, CHRF
    from sacrebleu.significance import PairedTest

    streams = reference_streams(references)
    test = PairedTest(
        [("baseline", list(baseline)), ("system", list(system))],
        {"bleu": BLEU(), "chrf": CHRF()},
        streams,  # type: ignore[arg-type]  # None pads items with fewer references
        test_type="bs",
        n_samples=samples,
    )
    _, results = test()
    out = {}
    shown = [k for k in results if k != "System"]  # sacrebleu's own names: "BLEU", "chrF2"
    for name, key in zip(("bleu", "chrf"), shown, strict=True):
        base, sys_ = results[key][0], results[key][1]
        out[name] = {
            "baseline": float(base.score),
            "system": float(sys_.score),
            "system_low": float(sys_.mean - sys_.ci),
            "system_high": float(sys_.mean + sys_.ci),
            "p_value": float(sys_.p_value),
        }
    return out


def ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks, ties sharing their mean rank."""
    x = np.asarray(values, dtype=float)
    order = np.argsort(x, kind="mergesort")
    r = np.empty(len(x))
    r[order] = np.arange(1, len(x) + 1)
    for value in np.unique(x):
        tie = x == value
        if tie.sum() > 1:
            r[tie] = r[tie].mean()
    return r


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson's correlation of the ranks (nan when either side is constant)."""
    if len(x) != len(y):
        raise ValueError(f"{len(x)} x values but {len(y)} y values")
    rx, ry = ranks(x), ranks(y)
    if len(rx) < 2 or rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def spearman_interval(
    x: Sequence[float], y: Sequence[float], samples: int = 2000, seed: int = 0
) -> dict[str, float]:
    """{"rho", "low", "high", "n"}: rho and a 95% percentile bootstrap interval over resampled pairs
    (resamples whose ranks are constant are skipped)."""
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(samples):
        d = rng.integers(0, len(xa), len(xa))
        rho = spearman(xa[d], ya[d])
        if not np.isnan(rho):
            boot.append(rho)
    rho = spearman(xa, ya)
    if not boot:
        return {"rho": rho, "low": float("nan"), "high": float("nan"), "n": len(xa)}
    low, high = np.percentile(boot, [100 * (1 - CONFIDENCE) / 2, 100 * (1 + CONFIDENCE) / 2])
    return {"rho": rho, "low": float(low), "high": float(high), "n": len(xa)}
