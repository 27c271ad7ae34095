"""Sweep report, Hydra callback: the report at the end of every ``train.py -m`` / ``eval.py -m``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from zegclip.common.atomic import write_text
from zegclip.engine.report.failures import STATUS_FILE
from zegclip.engine.report.render import run

BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


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
                _warn(
                    f"no multirun folder at {sweep}: no sweep report (run "
                    "`python -m zegclip.report DIR` later)"
                )
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
        write_text(job_dir / STATUS_FILE, json.dumps(payload, indent=2), what="job status")


def _sweep_dir_of(job_dir: Path) -> Path | None:
    for parent in [job_dir, *job_dir.parents][:4]:
        if (parent / "multirun.yaml").is_file():
            return parent
    return None


def _warn(message: str) -> None:
    print(f"[zegclip.report] warning: {message}", file=sys.stderr)
