"""A run's results: the summary of what the test stage logged, the per-class table and ``metrics.json``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig
from rich.table import Table

from zegclip.common.atomic import write_text
from zegclip.common.metric_names import SUMMARY_KEYS
from zegclip.common.values import json_number
from zegclip.engine.hydra_job import job_overrides, output_dir
from zegclip.engine.objective import objective_record
from zegclip.training.console import console


def summary_from_logged(
    results: list[dict[str, float]], class_names: Any, stage: str = "test"
) -> dict[str, Any]:
    """The metric summary from what ``trainer.test`` returns (works across processes: ddp_spawn
    sends rank 0's logged values back). Unlogged values (undefined, e.g. no unseen classes) are NaN."""
    if not results:
        return {}
    logged = results[0]
    nan = float("nan")
    summary: dict[str, Any] = {k: float(logged.get(f"{stage}/{k}", nan)) for k in SUMMARY_KEYS}
    summary["IoU_per_class"] = {name: float(logged.get(f"{stage}/IoU/{name}", nan)) for name in class_names}
    summary["split"] = stage  # "test", or "tune": the tuning split
    return summary


@rank_zero_only
def write_metrics(cfg: DictConfig, summary: dict[str, Any], unseen_names: Sequence[str], **info: Any) -> None:
    """Print the per-class table and write ``metrics.json`` into the run folder."""
    if not summary:
        return
    split = summary.get("split", "test")
    where = ", tuning split" if split == "tune" else ""
    table = Table(title=f"{info.get('dataset')} ({info.get('setting')}{where}): IoU per class (%)")
    table.add_column("class")
    table.add_column("split")
    table.add_column("IoU", justify="right")
    unseen = set(unseen_names)
    for name, value in summary["IoU_per_class"].items():
        role = ("pseudo-unseen" if split == "tune" else "unseen") if name in unseen else "seen"
        table.add_row(name, role, "-" if value != value else f"{100 * value:.1f}")
    console.print(table)
    headline = "  ".join(
        f"{key}: {'-' if summary[key] != summary[key] else f'{100 * summary[key]:.1f}'}"
        for key in SUMMARY_KEYS
    )
    console.print(f"[bold]{headline}[/bold]")
    payload: dict[str, Any] = {k: json_number(summary[k]) for k in SUMMARY_KEYS}
    payload["IoU_per_class"] = {k: json_number(v) for k, v in summary["IoU_per_class"].items()}
    payload.update(info)
    payload["split"] = split  # "test", or "tune": the tuning split
    objective = objective_record(cfg, summary)
    if objective is not None:
        payload["objective"] = objective  # what train.py returned to a sweeper (optimized_metric)
    payload["seed"] = int(cfg.seed)
    payload["overrides"] = job_overrides()
    payload["run_dir"] = str(output_dir(cfg))
    path = write_text(output_dir(cfg) / "metrics.json", json.dumps(payload, indent=2), what="metrics")
    weights = info.get("weights") or {}
    for stage in info.get("stages") or []:
        if stage.get("checkpoint"):
            console.print(
                f"{stage['setting']} stage (steps {stage['first_step']}-{stage['last_step']}): "
                f"{stage['checkpoint']}"
            )
    console.print(
        f"tested: {weights.get('checkpoint')} ({weights.get('selection')}, step {weights.get('step')})"
    )
    console.print(f"metrics: {path}")


@rank_zero_only
def announce_end(cfg: DictConfig, last_checkpoint: str | None) -> None:
    if last_checkpoint:
        console.print(f"final weights: {last_checkpoint}")
    console.print(f"[bold]run folder[/bold]: {output_dir(cfg)}")
