"""The open-vocabulary table's columns, rows and cells from evaluation folders
(zegclip/engine/benchmark_table.py)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from zegclip.engine.benchmark_table import COLUMNS, collect_table
from zegclip.engine.report.jobs import collect
from zegclip.engine.report.render import run

SIX = ["ade847", "context459", "ade150", "context", "voc", "voc20b"]


def write_eval(
    folder: Path, dataset: str, checkpoint: str, value: float, *extra: str, key: str = "mIoU_gt"
) -> None:
    folder.mkdir(parents=True)
    metrics = {
        key: value,
        "mIoU": value / 2,
        "dataset": dataset,
        "seed": 0,
        "weights": {"checkpoint": checkpoint, "step": 1, "selection": "given by ckpt_path"},
        "overrides": [f"ckpt_path={checkpoint}", f"dataset={dataset}", *extra],
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))


def write_training_run(folder: Path, seed: int, *overrides: str) -> str:
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"")
    (folder / "metrics.json").write_text(
        json.dumps({"seed": seed, "overrides": [f"seed={seed}", *overrides]})
    )
    return str(folder / "checkpoints" / "last.ckpt")


def test_columns_follow_the_field_order_and_other_datasets_follow(tmp_path: Path) -> None:
    assert [COLUMNS[d] for d in SIX] == ["A-847", "PC-459", "A-150", "PC-59", "VOC-20", "VOC-20b"]
    for k, dataset in enumerate(["coco", *reversed(SIX), "shapes"]):  # written in another order
        write_eval(tmp_path / f"{k}", dataset, "model.pth", 0.1 * (k + 1))
    table = collect_table(collect([tmp_path]))
    assert table is not None
    assert table.columns == ["A-847", "PC-459", "A-150", "PC-59", "VOC-20", "VOC-20b", "coco", "shapes"]
    (row,) = table.rows
    assert (
        row.label == "model.pth"
        and row.cells["ade847"] == [pytest.approx(0.7)]
        and row.cells["coco"] == [0.1]
    )


def test_seeds_of_a_recipe_make_one_row(tmp_path: Path) -> None:
    a = write_training_run(tmp_path / "train" / "0", 0, "experiment=coco_openvocab")
    b = write_training_run(tmp_path / "train" / "1", 1, "experiment=coco_openvocab")
    c = write_training_run(tmp_path / "train" / "2", 0, "experiment=coco_openvocab", "model.prompt_tokens=10")
    sweep = tmp_path / "eval"
    for k, (ckpt, value) in enumerate([(a, 0.2), (b, 0.4), (c, 0.5)]):
        write_eval(sweep / f"{k}", "ade150", ckpt, value, "trainer=cpu")
    write_eval(sweep / "3", "voc", a, 0.9, "trainer=cpu")
    write_eval(sweep / "4", "voc", "official.pth", 0.8, "trainer=cpu", key="mIoU")  # an older file
    paths = run([sweep], quiet=True)
    table = collect_table(collect([sweep]))
    assert table is not None and len(table.rows) == 3
    labels = [r.label for r in table.rows]
    assert labels == ["train: experiment=coco_openvocab", "train: model.prompt_tokens=10", "official.pth"]
    assert table.common == ["trainer=cpu"] and "files without it" in table.metric_note
    with paths["table_csv"].open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["n"] == "2" and rows[0]["seeds"] == "0,1"
    assert float(rows[0]["A-150_mean"]) == pytest.approx(0.3) and float(
        rows[0]["A-150_std"]
    ) == pytest.approx(0.1414213562)
    assert rows[0]["VOC-20_n"] == "1" and float(rows[0]["VOC-20_mean"]) == pytest.approx(0.9)
    assert rows[2]["VOC-20_mean"] == repr(0.4)  # mIoU of a file without mIoU_gt
    md = paths["table_md"].read_text()
    assert "| `train: experiment=coco_openvocab` | 2 | 0,1 | 30.0 ± 14.1 | 90.0 ± - (n=1) |" in md


def test_no_table_without_evaluations(tmp_path: Path) -> None:
    folder = tmp_path / "0"
    folder.mkdir()
    (folder / "metrics.json").write_text(
        json.dumps(
            {
                "mIoU": 0.5,
                "dataset": "voc",
                "seed": 0,
                "overrides": ["seed=0"],
                "weights": {"selection": "final weights (last step)"},
            }
        )
    )
    paths = run([tmp_path], quiet=True)
    assert "table_md" not in paths and not (tmp_path / "benchmark_table.md").exists()
    assert (tmp_path / "report.md").is_file()


def test_ignored_keys_join_the_seeds_of_transductive_runs(tmp_path: Path) -> None:
    """Each seed's transductive run starts from its own inductive run: ``--ignore init_from`` makes one
    row."""
    ckpts = [
        write_training_run(tmp_path / "train" / str(s), s, "setting=transductive", f"init_from=/runs/ind{s}")
        for s in (0, 1)
    ]
    for k, ckpt in enumerate(ckpts):
        write_eval(tmp_path / "eval" / str(k), "voc", ckpt, 0.5 + k / 10)
    assert len(collect_table(collect([tmp_path / "eval"])).rows) == 2
    (row,) = collect_table(collect([tmp_path / "eval"], ignore=["init_from"])).rows
    assert len(row.runs) == 2 and row.label == "train: setting=transductive"
