"""Sweep report, forensics: why a job left no metrics (``run.json``, ``job_status.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zegclip.engine.run_folder import MARKER as RUN_FILE

STATUS_FILE = "job_status.json"
"""Written into a multirun job's folder by :class:`SweepReportCallback` when the job ends."""


def failure_reason(folder: Path) -> str:
    """Why a job folder has no metrics.json: the run's own record (``run.json``), else Hydra's job
    status (a job that failed before its run started), else the end of its log."""
    run_record = _read_json(folder / RUN_FILE)
    if run_record is not None:
        status, error = run_record.get("status"), run_record.get("error")
        if status in ("failed", "interrupted"):
            return f"{status}: {error}" if error else status
        if status == "running":  # never finished: still running, or killed without a chance to record it
            return (
                f"no metrics.json; run.json says running (pid {run_record.get('pid')} on "
                f"{run_record.get('host')}): killed, or still running"
            )
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
