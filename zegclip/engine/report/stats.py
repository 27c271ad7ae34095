"""Sweep report, statistics: mean, sample std and n of each metric over a group's seeds."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from zegclip.common.metric_names import SUMMARY_KEYS
from zegclip.engine.report.jobs import Group


@dataclass
class Stat:
    mean: float
    std: float  # sample std (ddof=1); NaN when n < 2
    n: int


def stat(values: Iterable[float | None]) -> Stat:
    """Mean, sample std (ddof=1) and count of the defined values (None / NaN skipped)."""
    present = np.array([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if present.size == 0:
        return Stat(math.nan, math.nan, 0)
    std = float(present.std(ddof=1)) if present.size > 1 else math.nan
    return Stat(float(present.mean()), std, int(present.size))


def group_stats(group: Group, class_names: Sequence[str] = ()) -> dict[str, Stat]:
    """``{metric: Stat}`` for the summary metrics and ``IoU/<class>`` for each class."""
    done = [j.metrics for j in group.finished if j.metrics is not None]
    out = {m: stat(d.get(m) for d in done) for m in SUMMARY_KEYS}
    for name in class_names:
        out[f"IoU/{name}"] = stat((d.get("IoU_per_class") or {}).get(name) for d in done)
    return out


def fmt(s: Stat, group_n: int) -> str:
    """``47.4 ± 1.7`` in percent; ``-`` for the std of one value; ``(n=2)`` when values are missing."""
    if s.n == 0:
        return "-"
    text = f"{100 * s.mean:.1f} ± {100 * s.std:.1f}" if s.n > 1 else f"{100 * s.mean:.1f} ± -"
    return text if s.n == group_n else f"{text} (n={s.n})"


def seeds(group: Group) -> str:
    values = [j.seed for j in group.finished]
    return ",".join("?" if s is None else str(s) for s in values) or "-"
