"""The open-vocabulary table: one row per model, one column per benchmark, mIoU in each cell.

``python eval.py -m ckpt_path=RUN dataset=ade847,context459,ade150,context,voc,voc20b`` ends with
``benchmark_table.md`` / ``benchmark_table.csv`` in the sweep folder (written by the sweep report,
:mod:`zegclip.report`, whose ``python -m zegclip.report PATH ...`` writes them afterwards too,
also across several sweeps).

Rows: a checkpoint; or, when the checkpoint is the final weights of a training run folder, the
group of training runs that differ only in their seed (mean ± sample std over them, n runs),
so that ``ckpt_path=runs/seed0,runs/seed1,runs/seed2`` gives one row. Evaluation overrides other
than ``ckpt_path`` / ``dataset`` (e.g. ``evaluation.flip=true``) make rows of their own.
Columns, in the field's order (docs/evaluation.md): A-847, PC-459, A-150, PC-59, VOC-20, VOC-20b;
other datasets follow under their own names.

Cells: ``mIoU_gt`` of ``metrics.json`` (detectron2's mIoU: the mean over the classes present in
the ground truth, what the peers' tables report; ``mIoU`` for files written before it existed).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zegclip.common.atomic import write_text
from zegclip.engine.report.jobs import Job, Report, is_variable, override_key, read_job
from zegclip.engine.report.stats import Stat, fmt, stat

COLUMNS = {
    "ade847": "A-847",
    "context459": "PC-459",
    "ade150": "A-150",
    "context": "PC-59",
    "voc": "VOC-20",
    "voc20b": "VOC-20b",
}
"""Dataset name (``metrics.json``'s ``dataset``) -> column, in the field's column order."""
METRIC = "mIoU_gt"
FALLBACK = "mIoU"
FILES = ("benchmark_table.md", "benchmark_table.csv")
EVAL_SELECTION = "given by ckpt_path"
"""``metrics.json``'s ``weights.selection`` of an ``eval.py`` run (zegclip/engine/)."""
ROW_KEYS = ("ckpt_path", "dataset")
"""Overrides that do not make rows: the checkpoint (rows are models) and the dataset (columns)."""


@dataclass
class Row:
    """A model: a checkpoint, or a group of training runs that differ only in their seed."""

    key: tuple[str, ...]
    label: str
    runs: dict[str, int | None] = field(default_factory=dict)  # model (checkpoint or run folder) -> seed
    cells: dict[str, list[float | None]] = field(default_factory=dict)  # dataset -> one value per job
    overrides: list[str] = field(default_factory=list)  # a training group's overrides (without the seed)


@dataclass
class BenchmarkTable:
    rows: list[Row]
    datasets: list[str]
    metric_note: str
    common: list[str] = field(default_factory=list)  # evaluation overrides of every job

    @property
    def columns(self) -> list[str]:
        return [column_name(d) for d in self.datasets]


def column_name(dataset: str) -> str:
    return COLUMNS.get(dataset, dataset)


def is_evaluation(job: Job) -> bool:
    return (job.metrics or {}).get("weights", {}).get("selection") == EVAL_SELECTION


def _training_run(checkpoint: str) -> Job | None:
    """The training run whose final weights ``checkpoint`` is (``<run>/checkpoints/last.ckpt``), if any."""
    path = Path(checkpoint)
    if path.name != "last.ckpt" or path.parent.name != "checkpoints":
        return None
    folder = path.parent.parent
    if not ((folder / "metrics.json").is_file() or (folder / ".hydra" / "overrides.yaml").is_file()):
        return None
    return read_job(folder)


@dataclass
class _Model:
    """What an evaluation job evaluated: a training run's final weights, or a checkpoint."""

    job: Job
    checkpoint: str
    training: tuple[str, ...] | None  # the training run's overrides without the seed; None: not a run
    run: Job | None
    extra: tuple[str, ...]  # the evaluation's own overrides that make rows (not ckpt_path / dataset)

    @property
    def key(self) -> tuple[str, ...]:
        own = ("train", *self.training) if self.training is not None else ("checkpoint", self.checkpoint)
        return (*own, "|", *self.extra)


def _model(job: Job, ignore: Sequence[str] = ()) -> _Model:
    """``ignore``: override keys that tell no rows apart (the report's ``--ignore``, e.g. ``init_from``)."""
    checkpoint = str((job.metrics or {}).get("weights", {}).get("checkpoint"))
    extra = tuple(
        sorted(o for o in job.overrides if is_variable(o, ignore) and override_key(o) not in ROW_KEYS)
    )
    run = _training_run(checkpoint)
    training = tuple(sorted(o for o in run.overrides if is_variable(o, ignore))) if run is not None else None
    return _Model(job, checkpoint, training, run, extra)


RECIPE_KEYS = ("experiment", "dataset", "setting", "model")
"""Training overrides that name a recipe: a row's label when no other override tells rows apart."""


def _label(model: _Model, common_training: set[str], common_extra: set[str]) -> str:
    extra = [o for o in model.extra if o not in common_extra]
    if model.training is None:
        given = next(
            (o.split("=", 1)[1] for o in model.job.overrides if override_key(o) == "ckpt_path"),
            model.checkpoint,
        )
        return " ".join([given, *extra])
    own = [o for o in model.training if o not in common_training]
    own = own or [o for o in model.training if override_key(o) in RECIPE_KEYS] or ["(defaults)"]
    return " ".join(["train:", *own, *extra])


def collect_table(report: Report) -> BenchmarkTable | None:
    """The table of the report's finished evaluation jobs (None when there are none)."""
    models = [
        _model(job, report.ignore) for job in report.jobs if job.metrics is not None and is_evaluation(job)
    ]
    if not models:
        return None
    trained = [set(t) for t in {m.training for m in models if m.training is not None}]
    common_training = set.intersection(*trained) if trained else set()
    common_extra = set.intersection(*(set(m.extra) for m in models))
    rows: dict[tuple[str, ...], Row] = {}
    seen_datasets: list[str] = []
    fallback = False
    for model in models:
        metrics = model.job.metrics or {}
        dataset = str(metrics.get("dataset"))
        row = rows.setdefault(model.key, Row(model.key, _label(model, common_training, common_extra)))
        if model.run is not None:
            row.runs.setdefault(str(model.run.folder), model.run.seed)
            row.overrides = list(model.training or ())
        else:
            row.runs.setdefault(model.checkpoint, None)
        value = metrics.get(METRIC)
        if METRIC not in metrics:
            value, fallback = metrics.get(FALLBACK), True
        row.cells.setdefault(dataset, []).append(value)
        if dataset not in seen_datasets:
            seen_datasets.append(dataset)
    order = [d for d in COLUMNS if d in seen_datasets] + [d for d in seen_datasets if d not in COLUMNS]
    note = (
        "mIoU over the classes present in the ground truth (detectron2's SemSegEvaluator; `mIoU_gt` in "
        "metrics.json)" + ("; files without it: their `mIoU`" if fallback else "")
    )
    return BenchmarkTable(list(rows.values()), order, note, sorted(common_extra))


def cell_stat(row: Row, dataset: str) -> Stat:
    return stat(row.cells.get(dataset, []))


def seeds(row: Row) -> str:
    values = list(row.runs.values())
    return (
        ",".join("?" if s is None else str(s) for s in values) if any(s is not None for s in values) else "-"
    )


def markdown(table: BenchmarkTable, sources: Sequence[Path]) -> str:
    lines = ["# Open-vocabulary benchmarks: mIoU (%)", ""]
    lines.append("- Sources: " + ", ".join(f"`{p}`" for p in sources))
    lines.append(
        f"- Cells: {table.metric_note}; mean ± sample standard deviation (ddof=1) over the row's models, "
        "`(n=k)` where fewer than the row's n have that benchmark."
    )
    lines.append("- Rows: a checkpoint, or the training runs that differ only in their seed (n = models).")
    lines.append("")
    header = ["model", "n", "seeds", *table.columns]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for row in table.rows:
        n = len(row.runs)
        cells = [fmt(cell_stat(row, d), n) for d in table.datasets]
        lines.append("| " + " | ".join([f"`{row.label}`", str(n), seeds(row), *cells]) + " |")
    if table.common:
        lines += ["", "Evaluation overrides of every job: " + " ".join(f"`{o}`" for o in table.common)]
    lines += ["", "## Models", ""]
    for row in table.rows:
        lines.append(
            f"- `{row.label}`: "
            + ", ".join(f"`{m}`" for m in row.runs)
            + (f"; training overrides: {' '.join(f'`{o}`' for o in row.overrides)}" if row.overrides else "")
        )
    return "\n".join(lines) + "\n"


def write_csv(table: BenchmarkTable, path: Path) -> None:
    """One row per model; values are fractions in [0, 1] as in metrics.json; std empty for n < 2."""
    header = ["model", "n", "seeds"]
    for column in table.columns:
        header += [f"{column}_mean", f"{column}_std", f"{column}_n"]
    handle = io.StringIO(newline="")
    writer = csv.writer(handle)
    writer.writerow(header)
    for row in table.rows:
        out: list[Any] = [row.label, len(row.runs), seeds(row)]
        for dataset in table.datasets:
            s = cell_stat(row, dataset)
            out += ["" if math.isnan(s.mean) else repr(s.mean), "" if math.isnan(s.std) else repr(s.std), s.n]
        writer.writerow(out)
    write_text(path, handle.getvalue(), what="benchmark table")


def rich_table(table: BenchmarkTable) -> Any:
    from rich.table import Table

    out = Table(title="Open-vocabulary benchmarks: mIoU (%), mean ± std over seeds")
    for name in ("model", "n", "seeds", *table.columns):
        out.add_column(name, justify="left" if name in ("model", "seeds") else "right")
    for row in table.rows:
        n = len(row.runs)
        out.add_row(row.label, str(n), seeds(row), *(fmt(cell_stat(row, d), n) for d in table.datasets))
    return out


def write_benchmark_table(report: Report, out_dir: Path, quiet: bool = False) -> dict[str, Path]:
    """Write (and unless ``quiet`` print) the table of the report's evaluation jobs; ``{}`` when
    the report has none."""
    table = collect_table(report)
    if table is None:
        return {}
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"table_md": out_dir / FILES[0], "table_csv": out_dir / FILES[1]}
    write_text(paths["table_md"], markdown(table, report.sources), what="benchmark table")
    write_csv(table, paths["table_csv"])
    if not quiet:
        from rich.console import Console

        console = Console()
        console.print(rich_table(table))
        console.print(
            f"{table.metric_note}; table written to {paths['table_md']} and {paths['table_csv'].name}",
            highlight=False,
        )
    return paths
