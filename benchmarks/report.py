"""Write ``results.json`` (raw samples, summaries, machine) and ``results.md`` (the table)."""

from __future__ import annotations

import json
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


def series_text(series: Series, unit: str, stats: tuple[str, str] = ("p50", "p95")) -> str:
    """``p50 / p95 unit`` (or the stats asked for, named) or why there is none."""
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
    if series.timeouts:
        text += f" ({series.timeouts} timed out)"
    return text


def ratio_text(ratio: float | str | None) -> str:
    if ratio is None:
        return "n/a"
    if isinstance(ratio, str):
        return ratio
    if ratio == 0:
        return "0x"
    if ratio < 1:
        return f"{ratio:.2g}x ({1 / ratio:.3g}x less)"
    return f"{ratio:.3g}x"


def _row(figure: Figure) -> str:
    unit, stats = figure.spec.unit, figure.spec.stats
    if figure.error is not None:
        value = f"error: {figure.error}"
    elif figure.value_text is not None:
        value = figure.value_text
    else:
        value = series_text(figure.subject, unit, stats)
    value_lines = [value] + [f"{v.label}: {series_text(v, unit, stats)}" for v in figure.variants]
    base_lines = [f"{b.label}: {series_text(b, unit, stats)}" for b in figure.baselines] or ["-"]
    ratios = figure.ratios()
    ratio_lines = [f"{label}: {ratio_text(r)}" for label, r in ratios.items()] or ["-"]
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
        f"Python {machine['python']} ({machine['python_executable']}); "
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
        "Value and baselines are p50 / p95; the ratio is the value's p50 over the "
        "baseline's p50 (below 1: the supervisor is faster or smaller).",
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
        load = figure.extra.get("load_average_at_start")
        at = f", load average {load[0]:.2f} at its start" if load else ""
        lines.append(f"- **{figure.spec.title}** ({n} samples, {figure.seconds:.0f} s{at})")
        lines.extend(f"  - {note}" for note in figure.notes)
        breakdown = figure.extra.get("median_breakdown_ms")
        if breakdown:
            steps = ", ".join(f"{k} +{number(v)} ms" for k, v in breakdown.items())
            lines.append(f"  - median steps after COMMAND's exit: {steps}")
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


def write(out: Path, results: dict[str, Any], figures: list[Figure]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    data = {**results, "figures": [f.to_json() for f in figures]}
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(out / "results.json")
    tmp = out / "results.md.tmp"
    tmp.write_text(markdown(results, figures))
    tmp.replace(out / "results.md")
