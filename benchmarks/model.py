"""What a figure is: samples of the subject and its baselines, a budget, a verdict.

Every figure is measured in one run together with its baselines; the report
shows the subject's p50/p95, the budget, pass/fail and the ratio of the
subject's p50 to each baseline's p50. Nothing here measures anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between closest ranks."""
    if not values:
        raise ValueError("no samples")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Series:
    """The samples of one thing measured: the subject, a variant of it, or a baseline."""

    label: str
    samples: list[float] = field(default_factory=list)
    timeouts: int = 0  # trials that never reacted within ``timeout_s``
    timeout_s: float | None = None
    unavailable: str | None = None  # why it could not be measured (a missing tool)
    note: str = ""

    @property
    def available(self) -> bool:
        return self.unavailable is None

    @property
    def hangs(self) -> bool:
        """Every trial timed out: the thing never reacts (a waiter that cannot see a death)."""
        return self.available and self.timeouts > 0 and not self.samples

    def stat(self, name: str) -> float | None:
        if not self.samples:
            return None
        if name == "max":
            return max(self.samples)
        if name == "min":
            return min(self.samples)
        if name == "mean":
            return sum(self.samples) / len(self.samples)
        return percentile(self.samples, float(name.lstrip("p")))

    def summary(self) -> dict[str, float | int | None]:
        return {
            "n": len(self.samples),
            "timeouts": self.timeouts,
            **{name: self.stat(name) for name in ("p50", "p95", "min", "max", "mean")},
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "available": self.available,
            "unavailable": self.unavailable,
            "note": self.note,
            "timeout_s": self.timeout_s,
            "summary": self.summary(),
            "samples": self.samples,
        }


@dataclass(frozen=True)
class Check:
    """One budget line: ``stat`` of the subject <= ``limit``, or <= ``factor`` x a baseline's."""

    stat: str
    limit: float | None = None
    factor: float | None = None
    baseline: str | None = None  # label of the baseline the factor applies to

    def text(self, unit: str) -> str:
        if self.limit is not None:
            return f"{self.stat} <= {self.limit:g} {unit}"
        return f"{self.stat} <= {self.factor:g}x {self.baseline}"


@dataclass(frozen=True)
class Spec:
    """What a figure measures and its budget, declared where it is measured."""

    key: str
    title: str
    unit: str
    checks: tuple[Check, ...] = ()
    budget: str = ""  # the budget as the issue states it; built from ``checks`` when empty
    plot: bool = True  # a latency distribution worth plotting
    stats: tuple[str, str] = ("p50", "p95")  # shown in the table; the first gives the ratio


@dataclass
class Figure:
    spec: Spec
    subject: Series
    variants: list[Series] = field(default_factory=list)
    baselines: list[Series] = field(default_factory=list)
    conditions: list[tuple[str, bool]] = field(default_factory=list)  # checks beyond the stats
    value_text: str | None = None  # for figures whose value is not a latency distribution
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0  # how long the figure took to measure

    @property
    def budget(self) -> str:
        if self.spec.budget:
            return self.spec.budget
        return ", ".join(check.text(self.spec.unit) for check in self.spec.checks) or "-"

    def baseline(self, label: str) -> Series | None:
        return next((b for b in self.baselines if b.label == label), None)

    def check_results(self) -> list[tuple[str, bool | None]]:
        """Each budget line with True/False, or None where it cannot be judged."""
        results: list[tuple[str, bool | None]] = []
        for check in self.spec.checks:
            value = self.subject.stat(check.stat)
            limit = check.limit
            if check.factor is not None and check.baseline is not None:
                base = self.baseline(check.baseline)
                base_value = None if base is None else base.stat(check.stat)
                limit = None if base_value is None else check.factor * base_value
            ok = None if value is None or limit is None else value <= limit
            if self.subject.timeouts:
                ok = False
            results.append((check.text(self.spec.unit), ok))
        results.extend((text, ok) for text, ok in self.conditions)
        return results

    @property
    def verdict(self) -> str:
        """pass, fail, n/a (no budget or nothing to judge it by), not available, or error."""
        if self.error is not None:
            return "error"
        if not self.subject.available:
            return "not available"
        results = self.check_results()
        if any(ok is False for _, ok in results):
            return "fail"
        if results and all(ok is True for _, ok in results):
            return "pass"
        return "n/a"

    def ratios(self) -> dict[str, float | str | None]:
        """Subject / baseline, by p50 or the spec's first stat ("baseline hangs": never reacted)."""
        stat = self.spec.stats[0]
        mine = self.subject.stat(stat)
        out: dict[str, float | str | None] = {}
        for base in self.baselines:
            theirs = base.stat(stat)
            if base.hangs:
                out[base.label] = "baseline hangs"
            elif mine is None or theirs is None or theirs == 0 or not base.available:
                out[base.label] = None
            else:
                out[base.label] = mine / theirs
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.spec.key,
            "title": self.spec.title,
            "unit": self.spec.unit,
            "budget": self.budget,
            "verdict": self.verdict,
            "checks": [{"check": text, "passed": ok} for text, ok in self.check_results()],
            "value_text": self.value_text,
            "subject": self.subject.to_json(),
            "variants": [v.to_json() for v in self.variants],
            "baselines": [b.to_json() for b in self.baselines],
            "ratios_to_baselines": self.ratios(),
            "notes": self.notes,
            "extra": self.extra,
            "error": self.error,
            "seconds": round(self.seconds, 2),
        }
