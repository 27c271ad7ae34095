"""Sweep report: mean ± std over seeds for every group of runs.

``python -m zegclip.report PATH [PATH ...] [--per-class] [--out DIR]`` reads the ``metrics.json``
of every job of a multirun folder (``logs/train/multiruns/<time>/``) or of run folders, groups the
jobs by their command-line overrides without ``seed`` (and without ``hydra``, ``paths``,
``logger`` keys, which are not experimental variables, nor those given with ``--ignore``), and writes ``report.md`` and ``report.csv`` (mean, sample
std and n per metric and group), printing the table. Jobs a sweep defines that left no
``metrics.json`` are listed as failed or missing, with the reason when one was recorded.

:class:`SweepReportCallback` (a Hydra callback, ``conf/hydra/default.yaml``) writes the report at
the end of every ``python train.py -m ...``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from zegclip.run_folder import MARKER as RUN_FILE
from zegclip.study_report import study_sections

METRICS = ("mIoU_seen", "mIoU_unseen", "hIoU", "mIoU", "pAcc", "mAcc")
TABLE_METRICS = ("mIoU_seen", "mIoU_unseen", "hIoU", "mIoU", "pAcc")
LABELS = {"mIoU_seen": "mIoU(S)", "mIoU_unseen": "mIoU(U)", "hIoU": "hIoU", "mIoU": "mIoU", "pAcc": "pAcc",
          "mAcc": "mAcc"}  # fmt: skip
STATUS_FILE = "job_status.json"
"""Written into a multirun job's folder by :class:`SweepReportCallback` when the job ends."""
NON_VARIABLE = ("seed", "hydra", "paths", "logger")
"""Override keys (and their sub-keys) that never tell groups apart: seeds, Hydra, paths, loggers."""
BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


@dataclass
class Job:
    """One run folder: its overrides and, when it finished, its metrics."""

    folder: Path
    overrides: list[str]
    metrics: dict[str, Any] | None = None
    seed: int | None = None
    reason: str | None = None  # why there are no metrics
    name: str = ""

    def group_key(self, ignore: Sequence[str] = ()) -> tuple[str, ...]:
        return tuple(sorted(o for o in self.overrides if is_variable(o, ignore)))


@dataclass
class MissingJob:
    """A job the sweep defines but that left no folder."""

    name: str
    overrides: list[str]
    reason: str


@dataclass
class Group:
    key: tuple[str, ...]
    jobs: list[Job] = field(default_factory=list)

    @property
    def finished(self) -> list[Job]:
        return [j for j in self.jobs if j.metrics is not None]


@dataclass
class Stat:
    mean: float
    std: float  # sample std (ddof=1); NaN when n < 2
    n: int


@dataclass
class Report:
    sources: list[Path]
    groups: list[Group]
    missing: list[MissingJob]
    class_names: list[str]
    expected: int | None  # jobs the sweep definitions imply (None: unknown)
    ignore: list[str] = field(default_factory=list)  # extra keys left out of the grouping

    @property
    def jobs(self) -> list[Job]:
        return [j for g in self.groups for j in g.jobs]

    @property
    def failed(self) -> list[Job]:
        return [j for j in self.jobs if j.metrics is None]

    def common_overrides(self) -> list[str]:
        """Overrides shared by every group (shown once, not in each group's label)."""
        keys = [set(g.key) for g in self.groups]
        if not keys:
            return []
        shared = set.intersection(*keys)
        return [o for o in self.groups[0].key if o in shared]

    def label(self, group: Group) -> str:
        """The group's overrides that not every group shares (``(all)`` when nothing varies)."""
        common = set(self.common_overrides())
        own = [o for o in group.key if o not in common]
        return " ".join(own) if own else "(all)"

    def short(self, overrides: Sequence[str]) -> str:
        """A job's overrides without those every group shares and without hydra.* / paths.*."""
        common = set(self.common_overrides())
        kept = [o for o in overrides if o not in common and (is_variable(o, self.ignore) or override_key(o) == "seed")]
        return " ".join(kept)


# -- reading ------------------------------------------------------------------------------------


def override_key(override: str) -> str:
    """``"+a.b=1"`` -> ``"a.b"`` (prefixes ``+``, ``++``, ``~`` dropped)."""
    return override.split("=", 1)[0].lstrip("+~").strip()


def is_variable(override: str, ignore: Sequence[str] = ()) -> bool:
    """Whether an override tells groups apart: not ``seed``, ``hydra``, ``paths``, ``logger``
    (nor their sub-keys ``hydra.*``, ``hydra/*`` ...) and not in ``ignore``."""
    key = override_key(override)
    return not any(key == k or key.startswith((f"{k}.", f"{k}/")) for k in (*NON_VARIABLE, *ignore))


def is_job_folder(path: Path) -> bool:
    return (path / "metrics.json").is_file() or (path / ".hydra" / "overrides.yaml").is_file()


def _load_yaml(path: Path) -> Any:
    try:
        return OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception:  # unreadable file: treated as absent
        return None


def read_job(folder: Path, name: str = "") -> Job:
    """A job from its folder: ``metrics.json``, else the reason it has none."""
    metrics = None
    reason = None
    path = folder / "metrics.json"
    if path.is_file():
        try:
            metrics = json.loads(path.read_text())
            if not isinstance(metrics, dict):
                raise ValueError("not a JSON object")
        except ValueError as err:
            metrics, reason = None, f"unreadable metrics.json ({err})"
    overrides = (metrics or {}).get("overrides")
    if overrides is None:
        overrides = _load_yaml(folder / ".hydra" / "overrides.yaml") or []
    seed = (metrics or {}).get("seed")
    if seed is None:
        for config in (folder / "config_resolved.yaml", folder / ".hydra" / "config.yaml"):
            loaded = _load_yaml(config) if config.is_file() else None
            if isinstance(loaded, dict) and isinstance(loaded.get("seed"), int):
                seed = loaded["seed"]
                break
    if metrics is None and reason is None:
        reason = failure_reason(folder)
    return Job(folder=folder, overrides=[str(o) for o in overrides], metrics=metrics, seed=seed, reason=reason,
               name=name or folder.name)  # fmt: skip


def failure_reason(folder: Path) -> str:
    """Why a job folder has no metrics.json: the run's own record (``run.json``), else Hydra's job
    status (a job that failed before its run started), else the end of its log."""
    run_record = _read_json(folder / RUN_FILE)
    if run_record is not None:
        status, error = run_record.get("status"), run_record.get("error")
        if status in ("failed", "interrupted"):
            return f"{status}: {error}" if error else status
        if status == "running":  # never finished: still running, or killed without a chance to record it
            return f"no metrics.json; run.json says running (pid {run_record.get('pid')} on {run_record.get('host')}): killed, or still running"
        if status == "finished":
            return "finished without metrics.json (no test after training?)"
    status = folder / STATUS_FILE
    if status.is_file():
        try:
            data = json.loads(status.read_text())
            if data.get("status") == "FAILED":
                return f"failed: {data.get('error') or 'unknown error'}"
            if data.get("status") == "COMPLETED":
                return "finished without metrics.json (no test after training?)"
        except ValueError:
            pass
    for log in sorted(folder.glob("*.log")):
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        if lines:
            return f"no metrics.json; end of {log.name}: {lines[-1][:200]}"
    return "no metrics.json (failed, interrupted or still running)"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def find_job_folders(root: Path) -> list[Path]:
    """Job folders at or under ``root`` (not descending into a job folder)."""
    if is_job_folder(root):
        return [root]
    found = []
    for child in sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=_natural):
        found.extend(find_job_folders(child))
    return found


def _natural(path: Path) -> tuple[Any, ...]:
    return (0, int(path.name), "") if path.name.isdigit() else (1, 0, path.name)


def expected_jobs(sweep_dir: Path) -> list[list[str]] | None:
    """Each job's overrides as Hydra's basic sweeper expands them from ``multirun.yaml``.

    None when unknown (another sweeper, or sweeps such as ``glob`` that need the config).
    """
    config = _load_yaml(sweep_dir / "multirun.yaml")
    if not isinstance(config, dict):
        return None
    hydra = config.get("hydra") or {}
    sweeper = hydra.get("sweeper") or {}
    if sweeper.get("_target_", BASIC_SWEEPER) != BASIC_SWEEPER:
        return None
    task = list((hydra.get("overrides") or {}).get("task") or [])
    params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
    try:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parsed = OverridesParser.create().parse_overrides([*params, *task])
        batches = BasicSweeper.split_arguments(parsed, None)
    except Exception:
        return None
    return [list(job) for batch in batches for job in batch]


def collect(paths: Sequence[str | Path], ignore: Sequence[str] = ()) -> Report:
    """Jobs of every sweep or run folder in ``paths``, grouped by their overrides except ``seed``
    and the keys in :data:`NON_VARIABLE` and ``ignore`` (e.g. ``init_from``)."""
    jobs: list[Job] = []
    missing: list[MissingJob] = []
    expected_total: int | None = 0
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            raise FileNotFoundError(f"{str(path)!r} is not a folder (expected a multirun folder or run folders)")
        sweeps = [path] if (path / "multirun.yaml").is_file() else sorted(path.rglob("multirun.yaml"))
        sweep_dirs = [s if s.is_dir() else s.parent for s in sweeps]
        folders = find_job_folders(path)
        for sweep in sweep_dirs:
            expected = expected_jobs(sweep)
            inside = [f for f in folders if sweep in f.parents]
            found = [read_job(f, str(f.relative_to(sweep))) for f in inside]
            if expected is None:
                expected_total = None
            else:
                if expected_total is not None:
                    expected_total += len(expected)
                missing.extend(_unmatched(expected, found, sweep))
            jobs.extend(found)
        rest = [f for f in folders if not any(s in f.parents for s in sweep_dirs)]
        jobs.extend(read_job(f, str(f.relative_to(path)) if f != path else f.name) for f in rest)
        if expected_total is not None:
            expected_total += len(rest)
    if not jobs and not missing:
        raise FileNotFoundError(
            f"no runs found under {[str(p) for p in paths]}: expected folders holding metrics.json "
            "or .hydra/overrides.yaml (a multirun folder logs/train/multiruns/<time>/, or run folders)"
        )
    groups: dict[tuple[str, ...], Group] = {}
    for job in jobs:
        key = job.group_key(ignore)
        groups.setdefault(key, Group(key)).jobs.append(job)
    class_names: list[str] = []
    for job in jobs:
        for name in (job.metrics or {}).get("IoU_per_class") or {}:
            if name not in class_names:
                class_names.append(name)
    return Report([Path(p) for p in paths], list(groups.values()), missing, class_names, expected_total, list(ignore))


def _canonical(overrides: Sequence[str]) -> list[str]:
    """Overrides as Hydra's sweeper writes them (``x=false`` -> ``x=False``), sorted."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    out = []
    for text in overrides:
        try:
            override = parser.parse_override(text)
            out.append(f"{override.get_key_element()}={override.get_value_element_as_str()}")
        except Exception:
            out.append(text)
    return sorted(out)


def _unmatched(expected: list[list[str]], found: list[Job], sweep: Path) -> list[MissingJob]:
    remaining = [_canonical(j.overrides) for j in found]
    out = []
    for number, overrides in enumerate(expected):
        key = _canonical(overrides)
        if key in remaining:
            remaining.remove(key)
        else:
            out.append(MissingJob(f"#{number}", overrides, "not started (no job folder)"))
    return out


# -- statistics ---------------------------------------------------------------------------------


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
    out = {m: stat(d.get(m) for d in done) for m in METRICS}
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


# -- writing ------------------------------------------------------------------------------------


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
    header = ["group", "n", "seeds", *(LABELS[m] for m in TABLE_METRICS)]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for group in report.groups:
        stats = group_stats(group)
        n = len(group.finished)
        cells = [f"`{report.label(group)}`", str(n), seeds(group), *(fmt(stats[m], n) for m in TABLE_METRICS)]
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
            lines.append(f"| `{job.name}` | `{report.short(job.overrides)}` | {_md_escape(job.reason or '')} |")
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
    columns = [*METRICS, *(f"IoU/{n}" for n in names)]
    header = ["group", "overrides", "n", "seeds"]
    for col in columns:
        header += [f"{col}_mean", f"{col}_std", f"{col}_n"]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for group in report.groups:
            stats = group_stats(group, names)
            row: list[Any] = [report.label(group), " ".join(group.key), len(group.finished), seeds(group)]
            for col in columns:
                s = stats[col]
                row += ["" if math.isnan(s.mean) else repr(s.mean), "" if math.isnan(s.std) else repr(s.std), s.n]
            writer.writerow(row)


def rich_table(report: Report) -> Any:
    from rich.table import Table

    table = Table(title="Sweep report: mean ± std over seeds (%)")
    for name in ("group", "n", "seeds", *(LABELS[m] for m in TABLE_METRICS)):
        table.add_column(name, justify="left" if name in ("group", "seeds") else "right")
    for group in report.groups:
        stats = group_stats(group)
        n = len(group.finished)
        table.add_row(report.label(group), str(n), seeds(group), *(fmt(stats[m], n) for m in TABLE_METRICS))
    return table


def write_report(report: Report, out_dir: Path, per_class: bool = False) -> dict[str, Path]:
    """Write ``report.md`` and ``report.csv`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": out_dir / "report.md", "csv": out_dir / "report.csv"}
    paths["md"].write_text(markdown(report, per_class) + study_sections(report.sources))  # + Optuna trials
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
        console.print(f"[yellow]job {job.name} ({escape(report.short(job.overrides))}): {escape(job.reason or '')}[/yellow]")
    for miss in report.missing:
        console.print(f"[yellow]job {miss.name} ({escape(report.short(miss.overrides))}): {escape(miss.reason)}[/yellow]")
    console.print(f"report written to {paths['md']} and {paths['csv'].name}")


def run(paths: Sequence[str | Path], out: str | Path | None = None, per_class: bool = False,
        quiet: bool = False, ignore: Sequence[str] = ()) -> dict[str, Path]:  # fmt: skip
    """Collect, write (into ``out`` or the first path) and print a report; returns the file paths."""
    report = collect(paths, ignore)
    written = write_report(report, Path(out) if out else Path(paths[0]), per_class)
    if not quiet:
        print_report(report, written)
    return written


# -- Hydra callback -----------------------------------------------------------------------------

class SweepReportCallback(Callback):
    """Writes the sweep report at the end of a multirun; never fails the sweep.

    * ``on_job_end`` (multirun jobs): records the job's status (and error) in ``job_status.json``;
      with the local (basic) launcher, whose jobs run one after another in this process, it also
      refreshes the report, so a sweep that stops at a failed job still has one (Hydra raises the
      job's error after the batch and then never calls ``on_multirun_end``).
    * ``on_multirun_end``: writes and prints the final report. Launchers that return before their
      jobs end would leave nothing to report; hydra-submitit-launcher waits for every SLURM job
      (``launch`` returns their results), so the jobs' folders are complete by then.
    """

    def __init__(self, per_class: bool = False) -> None:
        self.per_class = bool(per_class)
        self._sweep_dir: Path | None = None

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        try:
            from hydra.types import RunMode

            if config.hydra.mode != RunMode.MULTIRUN:
                return
            job_dir = Path(str(config.hydra.runtime.output_dir))
            _write_status(job_dir, job_return)
            if str(config.hydra.launcher.get("_target_")) == BASIC_LAUNCHER:
                sweep = _sweep_dir_of(job_dir)
                if sweep is not None:
                    self._sweep_dir = sweep
                    run([sweep], per_class=self.per_class, quiet=True)
        except Exception as err:  # a report must never turn a finished job into an error
            _warn(f"sweep report not updated: {type(err).__name__}: {err}")

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        try:
            sweep = self._sweep_dir or Path(str(config.hydra.sweep.dir))
            if not (sweep / "multirun.yaml").is_file():
                _warn(f"no multirun folder at {sweep}: no sweep report (run `python -m zegclip.report DIR` later)")
                return
            run([sweep], per_class=self.per_class)
        except Exception as err:
            _warn(f"sweep report failed: {type(err).__name__}: {err}")


def _write_status(job_dir: Path, job_return: Any) -> None:
    status = getattr(getattr(job_return, "status", None), "name", None)
    payload: dict[str, Any] = {"status": status}
    if status == "FAILED":
        error = getattr(job_return, "_return_value", None)
        payload["error"] = f"{type(error).__name__}: {error}" if error is not None else None
    if job_dir.is_dir():
        (job_dir / STATUS_FILE).write_text(json.dumps(payload, indent=2))


def _sweep_dir_of(job_dir: Path) -> Path | None:
    for parent in [job_dir, *job_dir.parents][:4]:
        if (parent / "multirun.yaml").is_file():
            return parent
    return None


def _warn(message: str) -> None:
    print(f"[zegclip.report] warning: {message}", file=sys.stderr)


# -- command line -------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m zegclip.report",
        description="Mean ± std over seeds of every group of runs of a sweep (jobs with the same overrides "
        "except seed); writes report.md and report.csv.",
    )
    parser.add_argument("paths", nargs="+", help="multirun folder(s) (logs/train/multiruns/<time>) or run folders")
    parser.add_argument("--per-class", action="store_true", help="also report each class's IoU")
    parser.add_argument("--out", help="folder for report.md / report.csv (default: the first PATH)")
    parser.add_argument(
        "--ignore", action="append", default=[], metavar="KEY",
        help="an override key (and its sub-keys) that does not define groups, e.g. init_from; repeatable "
        "(seed, hydra, paths and logger never do)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        run(args.paths, out=args.out, per_class=args.per_class, ignore=args.ignore)
    except FileNotFoundError as err:
        parser.error(str(err))
    return 0


if __name__ == "__main__":
    sys.exit(main())
