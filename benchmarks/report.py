"""Write ``results.json`` (raw samples, summaries, machine), ``results.md`` (the table)
and ``summary.md`` (the compact table the README's Performance section is pasted from).

All three are written from one run; none is ever edited by hand.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from benchmarks.model import Figure, Series


def number(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


def series_text(
    series: Series, unit: str, stats: tuple[str, str] = ("p50", "p95"), *, compact: bool = False
) -> str:
    """``p50 / p95 unit`` (or the stats asked for, named) or why there is none.

    Then the lowest and highest of the rounds' first stat (``compact``: in
    brackets) and the secondary values.
    """
    if not series.available:
        return f"not available ({series.unavailable})"
    if series.hangs:
        within = f" within {series.timeout_s:g} s" if series.timeout_s else ""
        return f"never: no reaction{within} ({series.timeouts} of {series.timeouts} trials)"
    first, second = series.stat(stats[0]), series.stat(stats[1])
    if first is None or second is None:
        return "no samples"
    named = "" if stats == ("p50", "p95") else f"{stats[0]} / {stats[1]}: "
    text = f"{named}{number(first)} / {number(second)} {unit}"
    spread = series.spread(stats[0])
    if spread is not None and compact:
        text += f" [{number(spread[0])}-{number(spread[1])}]"
    elif spread is not None:
        low, high = number(spread[0]), number(spread[1])
        text += f" ({len(series.rounds)} rounds, {stats[0]} {low}-{high})"
    for key in series.also:
        value = series.also_stat(key, stats[0])
        if value is not None:
            text += f"; {number(value)} {key}"
    if series.timeouts:
        text += f" ({series.timeouts} timed out)"
    return text


def _times(ratio: float) -> str:
    return f"{ratio:.2g}x" if ratio < 1 else f"{ratio:.3g}x"


def ratio_text(ratio: float | str | None, rounds: list[float] | None = None) -> str:
    """``2.1x``; below 1 also how many times less; with the rounds' spread when there is one."""
    if ratio is None:
        return "n/a"
    if isinstance(ratio, str):
        return ratio
    if ratio == 0:
        return "0x"
    text = _times(ratio)
    if ratio < 1:
        text += f" ({1 / ratio:.3g}x less)"
    if rounds:
        text += f" (rounds {_times(min(rounds))}-{_times(max(rounds))})"
    return text


def _value(figure: Figure, *, compact: bool = False) -> str:
    """The figure's own value: its error, its text, or its subject's statistics."""
    if figure.error is not None:
        return f"error: {figure.error}"
    if figure.value_text is not None:
        return figure.value_text
    return series_text(figure.subject, figure.spec.unit, figure.spec.stats, compact=compact)


def _row(figure: Figure) -> str:
    unit, stats = figure.spec.unit, figure.spec.stats
    value = _value(figure)
    value_lines = [value] + [f"{v.label}: {series_text(v, unit, stats)}" for v in figure.variants]
    base_lines = [f"{b.label}: {series_text(b, unit, stats)}" for b in figure.baselines] or ["-"]
    ratios, rounds = figure.ratios(), figure.round_ratios()
    ratio_lines = [
        f"{label}: {ratio_text(r, rounds.get(label))}" for label, r in ratios.items()
    ] or ["-"]
    cells = [
        figure.spec.title,
        "\n".join(value_lines),
        figure.budget,
        figure.verdict,
        "\n".join(base_lines),
        "\n".join(ratio_lines),
    ]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _machine_line(machine: dict[str, Any]) -> str:
    tools = ", ".join(f"{k}: {v or 'not installed'}" for k, v in machine["tools"].items())
    return (
        f"{machine['cpu_model']}, {machine['cores']} cores ({machine['usable_cores']} usable), "
        f"{machine['memory_gib']} GiB; {machine['kernel']}; {machine['os']}; "
        f"Python {machine['python']} ({machine['python_executable']}, site .pth files: "
        f"{', '.join(machine['site_pth_files']) or 'none'}); "
        f"PID namespaces: {'yes' if machine['pid_namespaces'] else 'no'}; {tools}; "
        f"supervisor {machine['packages']['sidecar-supervisor']} at "
        f"{(machine['git']['commit'] or 'unknown')[:12]}"
        f"{' (supervisor/ modified)' if machine['git']['supervisor_dirty'] else ''}"
    )


def _load(values: list[float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def markdown(results: dict[str, Any], figures: list[Figure]) -> str:
    verdicts = [f.verdict for f in figures]
    counts = ", ".join(f"{verdicts.count(v)} {v}" for v in dict.fromkeys(verdicts))
    lines = [
        "# sidecar-supervisor benchmarks",
        "",
        f"`{results['command']}` ({results['mode']} run), {results['started_at']}, "
        f"{results['seconds']:.0f} s. {counts}.",
        "",
        f"Machine: {_machine_line(results['machine'])}. Load average (1, 5, 15 min) at the "
        f"start {_load(results['load_average_start'])}, at the end "
        f"{_load(results['load_average_end'])}.",
        "",
        f"Latency families ran in {results.get('rounds', 1)} interleaved round(s). Value and "
        "baselines are p50 / p95 over every sample of every round (or the stats named), then "
        "the lowest and highest p50 of the rounds; the ratio is the value's p50 over the "
        "baseline's p50 (below 1: the supervisor is faster or smaller), then its lowest and "
        "highest over the rounds.",
        "",
        "| figure | value p50 / p95 | budget | result | baselines p50 / p95 | ratio to baseline |",
        "|---|---|---|---|---|---|",
        *(_row(f) for f in figures),
        "",
        "## What each figure measured",
        "",
    ]
    for figure in figures:
        n = len(figure.subject.samples)
        loads = figure.extra.get("load_average_per_round") or [
            figure.extra.get("load_average_at_start")
        ]
        loads = [load for load in loads if load]
        at = ""
        if loads:
            at = ", load average " + " / ".join(f"{load[0]:.2f}" for load in loads)
            at += " at the start of each round" if len(loads) > 1 else " at its start"
        lines.append(f"- **{figure.spec.title}** ({n} samples, {figure.seconds:.0f} s{at})")
        lines.extend(f"  - {note}" for note in figure.notes)
        breakdown = median_breakdown(figure.extra.get("breakdowns_ms") or [])
        if breakdown:
            steps = ", ".join(f"{k} +{number(v)} ms" for k, v in breakdown.items())
            lines.append(f"  - median steps: {steps}")
    lines.append("")
    if results.get("plot"):
        lines += [
            "## Latency distributions",
            "",
            f"![latency distributions]({results['plot']})",
            "",
        ]
    elif results.get("plot_unavailable"):
        lines += [f"Plot not written: {results['plot_unavailable']}.", ""]
    if results.get("leftover_processes"):
        lines += [
            f"Warning: {results['leftover_processes']} processes had to be killed at the end.",
            "",
        ]
    return "\n".join(lines)


def median_breakdown(breakdowns: list[dict[str, float]]) -> dict[str, float]:
    """The median of each logged step over the trials, in order of time."""
    keys = {key for b in breakdowns for key in b}
    medians = {key: statistics.median([b[key] for b in breakdowns if key in b]) for key in keys}
    return dict(sorted(medians.items(), key=lambda item: item[1]))


SUMMARY_BASELINES = 4  # baselines shown per row of summary.md (results.md has them all)


def _short(series: Series, unit: str, stats: tuple[str, str]) -> str:
    """The first stat only, with the rounds' spread and the secondary values."""
    if not series.available:
        return "not available"
    if series.hangs:
        return "never stops"
    value = series.stat(stats[0])
    if value is None:
        return "no samples"
    text = f"{number(value)} {unit}"
    spread = series.spread(stats[0])
    if spread is not None:
        text += f" [{number(spread[0])}-{number(spread[1])}]"
    for key in series.also:
        also = series.also_stat(key, stats[0])
        if also is not None:
            text += f", {number(also)} {key}"
    return text


def _summary_row(figure: Figure) -> str:
    unit, stats = figure.spec.unit, figure.spec.stats
    value = _value(figure, compact=True)
    checked = {c.series for c in figure.spec.checks if c.series}
    if checked:  # the budget holds for several series: name each
        value = f"{figure.subject.label}: {value}"
    parts = [value] + [
        f"{v.label}: {_short(v, unit, stats)}" for v in figure.variants if v.label in checked
    ]
    ratios = figure.ratios()
    shown = figure.baselines[:SUMMARY_BASELINES]
    base = [
        f"{b.label} {_short(b, unit, stats)} ({ratio_text(ratios.get(b.label))})" for b in shown
    ]
    if len(figure.baselines) > len(shown):
        base.append(f"{len(figure.baselines) - len(shown)} more in results.md")
    cells = [
        figure.spec.title,
        "<br>".join(parts),
        figure.budget,
        figure.verdict,
        "; ".join(base) or "-",
    ]
    return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


def summary(results: dict[str, Any], figures: list[Figure]) -> str:
    """The compact table: one row per figure, every number from this run."""
    machine = results["machine"]
    commit = (machine["git"]["commit"] or "unknown")[:12]
    dirty = " (supervisor/ modified)" if machine["git"]["supervisor_dirty"] else ""
    loads = f"{_load(results['load_average_start'])} -> {_load(results['load_average_end'])}"
    return "\n".join(
        [
            f"From one run: `{results['command']}` ({results['mode']}, "
            f"{results.get('rounds', 1)} round(s) of each latency family) at commit {commit}"
            f"{dirty}, {results['started_at']}; {machine['cpu_model']}, {machine['cores']} "
            f"cores, {machine['kernel'].split()[1]}, Python {machine['python']}; load average "
            f"{loads}. Values are p50 / p95 over every round (or the stats named), "
            "[lowest-highest p50 of the rounds]; ratios are p50 over the baseline's p50 in "
            "the same run; start-up is measured in one clean venv (see "
            "benchmarks/README.md).",
            "",
            "| figure | sidecar-supervisor | budget | result | baselines (same run), ratio |",
            "|---|---|---|---|---|",
            *(_summary_row(f) for f in figures),
            "",
        ]
    )


def write(out: Path, results: dict[str, Any], figures: list[Figure]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    data = {**results, "figures": [f.to_json() for f in figures]}
    written = {
        "results.json": json.dumps(data, indent=1) + "\n",
        "results.md": markdown(results, figures),
        "summary.md": summary(results, figures),
    }
    for name, text in written.items():
        tmp = out / f"{name}.tmp"
        tmp.write_text(text)
        tmp.replace(out / name)
