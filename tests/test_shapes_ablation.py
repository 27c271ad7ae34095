"""benchmarks/shapes_ablation.py: runs train.py / eval.py per row and seed, writes the table."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location(
        "shapes_ablation", REPO / "benchmarks" / "shapes_ablation.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_render_reports_mean_std_and_marks_partial_tables():
    ablation = load_script()
    results = {
        "inductive": {
            0: {"mIoU_seen": 0.4, "mIoU_unseen": 0.3, "hIoU": 0.2},
            1: {"mIoU_seen": 0.6, "mIoU_unseen": 0.5, "hIoU": 0.4},
        },
        "random_clip": {0: {"mIoU_seen": 0.1, "mIoU_unseen": 0.05, "hIoU": 0.07}},
    }
    times = {"inductive": {0: 10.0, 1: 20.0}, "random_clip": {0: 12.0}}
    table = ablation.render(["inductive", "random_clip"], results, times, [0, 1], [])
    assert "PARTIAL" in table.splitlines()[0]
    assert "| ZegCLIP, inductive (default) | 50.0 ± 14.1 | 40.0 ± 14.1 | 30.0 ± 14.1 | 15 s |" in table
    assert "| random-init CLIP | 10.0 | 5.0 | 7.0 | 12 s |" in table
    complete = ablation.render(["inductive"], {"inductive": results["inductive"]}, times, [0, 1], [])
    assert "PARTIAL" not in complete


def test_ablation_runs_dependent_rows_after_the_inductive_run(tmp_path, monkeypatch):
    ablation = load_script()
    out = tmp_path / "table.md"
    tiny = [
        "trainer.max_steps=4",
        "trainer.val_check_interval=2",
        "dataset.layout.train_size=64",
        "dataset.layout.val_size=10",
        "dataset.layout.test_size=10",
        "dataset.batch_size=8",
    ]
    argv = [
        "shapes_ablation.py",
        "--seeds",
        "0",
        "--rows",
        "calibration",
        "transductive",
        "--work-dir",
        str(tmp_path / "runs"),
        "--out",
        str(out),
        *tiny,
    ]
    monkeypatch.setattr(sys, "argv", argv)
    assert ablation.main() == 0
    table = out.read_text()
    # "inductive" was added because the calibration row evaluates its checkpoints
    for description in ("ZegCLIP, inductive", "transductive", "seen-class calibration"):
        assert description in table
    assert "PARTIAL" not in table
    for row in ("inductive", "transductive", "calibration"):
        assert (tmp_path / "runs" / row / "seed0" / "metrics.json").is_file()
    # the transductive row is the one-command recipe: 2 inductive + 2 transductive steps
    # (4, as the inductive row)
    staged = json.loads((tmp_path / "runs" / "transductive" / "seed0" / "metrics.json").read_text())
    assert [(s["setting"], s["last_step"]) for s in staged["stages"]] == [
        ("inductive", 2),
        ("transductive", 4),
    ]
    # the calibration row evaluates the inductive checkpoint on the same (reduced) test split
    evaluated = (tmp_path / "runs" / "calibration" / "seed0" / "config_resolved.yaml").read_text()
    assert "test_size: 10" in evaluated and "seen_bias: 0.1" in evaluated


def test_finished_runs_are_reused_and_unfinished_ones_are_not(tmp_path):
    ablation = load_script()
    run = {"status": "finished", "started": "2026-12-01T22:43:55+0000", "ended": "2026-12-01T22:50:35+0000"}
    finished, interrupted, empty = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for folder, status in ((finished, "finished"), (interrupted, "interrupted")):
        folder.mkdir()
        (folder / "run.json").write_text(json.dumps({**run, "status": status}))
        (folder / "metrics.json").write_text(json.dumps({"mIoU_seen": 0.5, "mIoU_unseen": 0.4, "hIoU": 0.44}))
    assert ablation.finished_run(finished) == 400.0
    assert ablation.finished_run(interrupted) is None
    assert ablation.finished_run(empty) is None  # never started
    (finished / "metrics.json").unlink()
    assert ablation.finished_run(finished) is None  # finished training but no test metrics
