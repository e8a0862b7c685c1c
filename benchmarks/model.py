"""What a figure is: samples of the subject and its baselines, a budget, a verdict.

Every figure is measured in one run together with its baselines; the report
shows the subject's p50/p95, the budget, pass/fail and the ratio of the
subject's p50 to each baseline's p50. A latency figure is measured in rounds
(``merge_rounds`` joins them): its stats are over every sample, and the
spread of the rounds' p50s says how far one round can be trusted. Nothing
here measures anything.
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
    rounds: list[int] = field(default_factory=list)  # samples per round, in order (merged)
    # secondary values, one per sample, named with their unit ("wakeups/10 s", "wall s")
    also: dict[str, list[float]] = field(default_factory=dict)

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

    def round_samples(self) -> list[list[float]]:
        """The samples of each round (one round when the series was not merged)."""
        if not self.rounds:
            return [self.samples] if self.samples else []
        found, at = [], 0
        for size in self.rounds:
            found.append(self.samples[at : at + size])
            at += size
        return found

    def round_stats(self, name: str) -> list[float]:
        """``name`` of each round that has samples (p50 per round: the spread)."""
        return [Series(self.label, part).stat(name) or 0.0 for part in self.round_samples() if part]

    def spread(self, name: str = "p50") -> tuple[float, float] | None:
        """Lowest and highest ``name`` of the rounds; None with fewer than two rounds."""
        values = self.round_stats(name)
        return (min(values), max(values)) if len(values) >= 2 else None

    def also_stat(self, key: str, name: str) -> float | None:
        values = self.also.get(key) or []
        return Series(key, values).stat(name) if values else None

    def summary(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "n": len(self.samples),
            "timeouts": self.timeouts,
            **{name: self.stat(name) for name in ("p50", "p95", "min", "max", "mean")},
        }
        if len(self.rounds) >= 2:
            found["rounds"] = len(self.rounds)
            found["round_p50s"] = self.round_stats("p50")
            found["round_p50_spread"] = self.spread("p50")
        for key, values in self.also.items():
            found[key] = {name: Series(key, values).stat(name) for name in ("p50", "mean", "max")}
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "available": self.available,
            "unavailable": self.unavailable,
            "note": self.note,
            "timeout_s": self.timeout_s,
            "summary": self.summary(),
            "samples": self.samples,
            "rounds": self.rounds,
            "also": self.also,
        }


@dataclass(frozen=True)
class Check:
    """One budget line: ``stat`` of the subject <= ``limit``, or <= ``factor`` x a baseline's.

    ``series`` names a variant to check instead of the subject (a figure whose
    budget holds for several configurations).
    """

    stat: str
    limit: float | None = None
    factor: float | None = None
    baseline: str | None = None  # label of the baseline the factor applies to
    series: str | None = None  # label of the variant checked; None: the subject

    def text(self, unit: str) -> str:
        who = f"{self.series}: " if self.series else ""
        if self.limit is not None:
            return f"{who}{self.stat} <= {self.limit:g} {unit}"
        return f"{who}{self.stat} <= {self.factor:g}x {self.baseline}"


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

    def variant(self, label: str) -> Series | None:
        return next((v for v in self.variants if v.label == label), None)

    def check_results(self) -> list[tuple[str, bool | None]]:
        """Each budget line with True/False, or None where it cannot be judged."""
        results: list[tuple[str, bool | None]] = []
        for check in self.spec.checks:
            checked = self.subject if check.series is None else self.variant(check.series)
            value = None if checked is None else checked.stat(check.stat)
            limit = check.limit
            if check.factor is not None and check.baseline is not None:
                base = self.baseline(check.baseline)
                base_value = None if base is None else base.stat(check.stat)
                limit = None if base_value is None else check.factor * base_value
            ok = None if value is None or limit is None else value <= limit
            if checked is not None and checked.timeouts:
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

    def round_ratios(self) -> dict[str, list[float]]:
        """Subject / baseline per round (same stat as ``ratios``), where both have each round."""
        stat = self.spec.stats[0]
        mine = self.subject.round_stats(stat)
        out: dict[str, list[float]] = {}
        for base in self.baselines:
            theirs = base.round_stats(stat)
            if len(mine) >= 2 and len(theirs) == len(mine) and all(theirs):
                out[base.label] = [m / t for m, t in zip(mine, theirs, strict=True)]
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
            "round_ratios_to_baselines": self.round_ratios(),
            "notes": self.notes,
            "extra": self.extra,
            "error": self.error,
            "seconds": round(self.seconds, 2),
        }


def _merge_series(parts: list[Series]) -> Series:
    """One series from the same series of each round: samples joined, rounds recorded."""
    first = parts[0]
    merged = Series(
        first.label,
        timeout_s=first.timeout_s,
        unavailable=next((p.unavailable for p in parts if p.unavailable), None),
        note=first.note,
    )
    for part in parts:
        merged.samples.extend(part.samples)
        merged.timeouts += part.timeouts
        merged.rounds.append(len(part.samples))
        for key, values in part.also.items():
            merged.also.setdefault(key, []).extend(values)
    return merged


def _merge_list(parts: list[list[Series]]) -> list[Series]:
    labels = list(dict.fromkeys(s.label for part in parts for s in part))
    found = []
    for label in labels:
        same = [s for part in parts for s in part if s.label == label]
        found.append(_merge_series(same))
    return found


def merge_rounds(rounds: list[Figure]) -> Figure:
    """The figure of several rounds of the same measurement.

    Samples are joined (stats are over all of them, each series remembers its
    rounds), timeouts added, a condition holds only if it held in every round,
    notes are kept once, list-valued extras are joined and any other extra is
    kept per round. An error in any round is the figure's error.
    """
    if len(rounds) == 1:
        return rounds[0]
    first = rounds[0]
    conditions: dict[str, bool] = {}
    for figure in rounds:
        for text, ok in figure.conditions:
            conditions[text] = conditions.get(text, True) and ok
    extra: dict[str, Any] = {}
    for figure in rounds:
        for key, value in figure.extra.items():
            if isinstance(value, list) and key not in ("load_average_at_start",):
                extra.setdefault(key, []).extend(value)
            else:
                extra.setdefault(f"{key}_per_round", []).append(value)
    errors = [f"round {i}: {f.error}" for i, f in enumerate(rounds, 1) if f.error is not None]
    return Figure(
        first.spec,
        _merge_series([f.subject for f in rounds]),
        variants=_merge_list([f.variants for f in rounds]),
        baselines=_merge_list([f.baselines for f in rounds]),
        conditions=list(conditions.items()),
        value_text=None,  # a figure measured in rounds shows its series' stats
        notes=list(dict.fromkeys(n for f in rounds for n in f.notes)),
        extra=extra,
        error="; ".join(errors) or None,
        seconds=sum(f.seconds for f in rounds),
    )
