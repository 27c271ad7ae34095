"""Sweep report, writing: ``report.md``, ``report.csv`` and the console table."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zegclip.common.atomic import write_text
from zegclip.common.metric_names import LABELS, SUMMARY_KEYS, TABLE_KEYS
from zegclip.engine.report.jobs import Report, collect
from zegclip.engine.report.stats import fmt, group_stats, seeds
from zegclip.engine.study_report import study_sections


def markdown(report: Report, per_class: bool = False) -> str:
    lines = ["# Sweep report", ""]
    lines.append("- Sources: " + ", ".join(f"`{p}`" for p in report.sources))
    finished = sum(len(g.finished) for g in report.groups)
    failed = len(report.failed) + len(report.missing)
    expected = report.expected if report.expected is not None else len(report.jobs)
    lines.append(f"- Jobs: {expected} expected, {finished} finished, {failed} failed or missing.")
    common = report.common_overrides()
    if common:
        lines.append("- Overrides of every job: " + " ".join(f"`{o}`" for o in common))
    lines += [
        "- Values: mean ± sample standard deviation (ddof=1) over the group's finished jobs, in %;"
        " n = finished jobs; groups = jobs with the same overrides except `seed`.",
        "",
    ]
    header = ["group", "n", "seeds", *(LABELS[m] for m in TABLE_KEYS)]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for group in report.groups:
        stats = group_stats(group)
        n = len(group.finished)
        cells = [f"`{report.label(group)}`", str(n), seeds(group), *(fmt(stats[m], n) for m in TABLE_KEYS)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("## Failed or missing jobs")
    lines.append("")
    if not report.failed and not report.missing:
        lines.append("None.")
    else:
        lines.append("| job | overrides | status |")
        lines.append("|---|---|---|")
        for job in report.failed:
            lines.append(
                f"| `{job.name}` | `{report.short(job.overrides)}` | {_md_escape(job.reason or '')} |"
            )
        for miss in report.missing:
            lines.append(f"| {miss.name} | `{report.short(miss.overrides)}` | {_md_escape(miss.reason)} |")
    if per_class and report.class_names:
        lines += ["", "## IoU per class (%)", ""]
        labels = [report.label(g) for g in report.groups]
        lines.append("| class | " + " | ".join(f"`{lb}`" for lb in labels) + " |")
        lines.append("|---|" + "---|" * len(labels))
        all_stats = [group_stats(g, report.class_names) for g in report.groups]
        for name in report.class_names:
            cells = [fmt(s[f"IoU/{name}"], len(g.finished)) for s, g in zip(all_stats, report.groups)]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def write_csv(report: Report, path: Path, per_class: bool = False) -> None:
    """One row per group; values are fractions in [0, 1] as in metrics.json; std empty for n < 2."""
    names = report.class_names if per_class else []
    columns = [*SUMMARY_KEYS, *(f"IoU/{n}" for n in names)]
    header = ["group", "overrides", "n", "seeds"]
    for col in columns:
        header += [f"{col}_mean", f"{col}_std", f"{col}_n"]
    handle = io.StringIO(newline="")
    writer = csv.writer(handle)
    writer.writerow(header)
    for group in report.groups:
        stats = group_stats(group, names)
        row: list[Any] = [report.label(group), " ".join(group.key), len(group.finished), seeds(group)]
        for col in columns:
            s = stats[col]
            row += ["" if math.isnan(s.mean) else repr(s.mean), "" if math.isnan(s.std) else repr(s.std), s.n]
        writer.writerow(row)
    write_text(path, handle.getvalue(), what="sweep report")


def rich_table(report: Report) -> Any:
    from rich.table import Table

    table = Table(title="Sweep report: mean ± std over seeds (%)")
    for name in ("group", "n", "seeds", *(LABELS[m] for m in TABLE_KEYS)):
        table.add_column(name, justify="left" if name in ("group", "seeds") else "right")
    for group in report.groups:
        stats = group_stats(group)
        n = len(group.finished)
        table.add_row(report.label(group), str(n), seeds(group), *(fmt(stats[m], n) for m in TABLE_KEYS))
    return table


def write_report(report: Report, out_dir: Path, per_class: bool = False) -> dict[str, Path]:
    """Write ``report.md`` and ``report.csv`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": out_dir / "report.md", "csv": out_dir / "report.csv"}
    write_text(paths["md"], markdown(report, per_class) + study_sections(report.sources), what="sweep report")
    write_csv(report, paths["csv"], per_class)
    return paths


def print_report(report: Report, paths: dict[str, Path]) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console()
    console.print(rich_table(report))
    common = report.common_overrides()
    if common:
        console.print("overrides of every job: " + escape(" ".join(common)), highlight=False)
    for job in report.failed:
        console.print(
            f"[yellow]job {job.name} ({escape(report.short(job.overrides))}): "
            f"{escape(job.reason or '')}[/yellow]"
        )
    for miss in report.missing:
        console.print(
            f"[yellow]job {miss.name} ({escape(report.short(miss.overrides))}): "
            f"{escape(miss.reason)}[/yellow]"
        )
    console.print(f"report written to {paths['md']} and {paths['csv'].name}")


def run(
    paths: Sequence[str | Path],
    out: str | Path | None = None,
    per_class: bool = False,
    quiet: bool = False,
    ignore: Sequence[str] = (),
) -> dict[str, Path]:
    """Collect, write (into ``out`` or the first path) and print a report; returns the file paths."""
    from zegclip.engine.benchmark_table import write_benchmark_table

    report = collect(paths, ignore)
    written = write_report(report, Path(out) if out else Path(paths[0]), per_class)
    if not quiet:
        print_report(report, written)
    written.update(write_benchmark_table(report, Path(out) if out else Path(paths[0]), quiet))  # eval sweeps
    return written
