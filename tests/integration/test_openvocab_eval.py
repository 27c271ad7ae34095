"""The open-vocabulary benchmarks end to end: the released layouts (tiny synthetic copies) ->
``prepare`` -> ``eval.py dataset=<benchmark>`` on the bundled tiny shapes model -> ``metrics.json``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from hydra.utils import instantiate

from zegclip.data import read_label
from zegclip.data.prepare import main as prepare
from zegclip.data.vocabularies import load_vocabulary
from zegclip.engine.evaluate import evaluate
from zegclip.model.text import TextEncoder

from .helpers import REPO_ROOT, check_metric_values, compose_config, read_metrics, synthetic

EVAL = [
    "ckpt_path=shapes",
    "trainer=cpu",
    "dataset.test_short_side=64",
    "dataset.num_workers=0",
    "dataset.persistent_workers=false",
    "dataset.pin_memory=false",
]


@pytest.fixture(scope="module")
def benchmarks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with the four benchmarks, prepared by the CLI from their release layouts."""
    tmp = tmp_path_factory.mktemp("openvocab")
    root = tmp / "data"
    ade = synthetic.make_ade_full(tmp / "ade_release")
    assert prepare(["ade847", "--src", str(ade), "--dst", str(root), "--workers", "1"]) == 0
    ctx, _ = synthetic.make_context459_release(tmp / "ctx_release", root)
    assert prepare(["context459", "--src", str(ctx), "--dst", str(root), "--workers", "1"]) == 0
    synthetic.make_ade150(root)
    synthetic.make_voc(root)
    return root


def _present_classes(paths: list[Path], ignore: int = 65535) -> set[int]:
    values: set[int] = set()
    for path in paths:
        values |= set(np.unique(read_label(path)).tolist())
    return values - {ignore}


def test_eval_cli_on_ade847(benchmarks: Path, tmp_path: Path) -> None:
    """``python eval.py ckpt_path=... dataset=ade847``: 847 classes, ids above 255 in the metrics."""
    out = tmp_path / "cli"
    overrides = [
        "dataset=ade847",
        f"paths.data_dir={benchmarks}",
        *EVAL,
        f"hydra.run.dir={out}",
        f"paths.log_dir={tmp_path / 'logs'}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ZEGCLIP_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "eval.py", *overrides],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = read_metrics(out)
    recorded = yaml.safe_load((out / ".hydra" / "config.yaml").read_text())["dataset"]
    assert (
        recorded["vocabulary"] == "ade847" and recorded["text_synonyms"] == "average"
    )  # the list the result used
    assert metrics["dataset"] == "ade847" and metrics["seen_bias"] == 0.0  # cross-dataset: no seen offset
    check_metric_values(metrics, list(load_vocabulary("ade847").classes))
    iou = list(metrics["IoU_per_class"].values())
    labels = sorted((benchmarks / "ADE20K_2021_17_01/annotations_detectron2/validation").glob("*.tif"))
    present = _present_classes(labels)
    assert present == {0, 1, 844, 846}  # wall, building, gear shift, adding machine
    assert all(iou[k] is not None for k in present)  # every labelled class is in the confusion matrix


@pytest.mark.parametrize(
    ("dataset", "num_classes", "synonyms"),
    [("context459", 459, None), ("ade150", 150, None), ("voc20b", 21, None)],
)
def test_eval_on_the_other_benchmarks(
    benchmarks, tmp_path, monkeypatch, dataset, num_classes, synonyms
) -> None:
    rules: list[str | None] = []
    original = TextEncoder.class_embeddings

    def recording(self, class_names, templates="single", synonyms=None):
        rules.append(synonyms)
        return original(self, class_names, templates, synonyms)

    monkeypatch.setattr(TextEncoder, "class_embeddings", recording)
    cfg = compose_config(
        "eval", [f"dataset={dataset}", f"paths.data_dir={benchmarks}", *EVAL], tmp_path / "eval"
    )
    evaluate(cfg)
    metrics = read_metrics(Path(cfg.paths.output_dir))
    assert metrics["dataset"] == dataset and len(metrics["IoU_per_class"]) == num_classes
    check_metric_values(metrics, list(cfg.dataset.class_names))
    assert rules and set(rules) == {synonyms}
    if dataset == "context459":
        labels = sorted((benchmarks / "VOCdevkit/VOC2010/annotations_detectron2/pc459_val").glob("*.tif"))
        present = _present_classes(labels)
        assert {299, 458, 430} <= present  # ids above 255
        iou = list(metrics["IoU_per_class"].values())
        assert all(iou[k] is not None for k in present)
    if dataset == "voc20b":
        assert list(metrics["IoU_per_class"])[20] == "background"
        assert metrics["IoU_per_class"]["background"] is not None  # background is a scored class


def test_the_synonym_rule_of_the_dataset_config_reaches_the_text_tower(
    benchmarks, tmp_path, monkeypatch
) -> None:
    """``dataset.text_synonyms`` is what the evaluation module embeds with (and records)."""
    import zegclip
    from zegclip.engine.builders import evaluation_module as _evaluation_module

    rules: list[str | None] = []
    original = TextEncoder.class_embeddings

    def recording(self, class_names, templates="single", synonyms=None):
        rules.append(synonyms)
        return original(self, class_names, templates, synonyms)

    monkeypatch.setattr(TextEncoder, "class_embeddings", recording)
    cfg = compose_config(
        "eval",
        ["dataset=ade847", f"paths.data_dir={benchmarks}", *EVAL, "dataset.text_synonyms=first"],
        tmp_path / "e",
    )
    module = _evaluation_module(cfg, zegclip.load("shapes"), instantiate(cfg.dataset))
    assert module.text_embeddings().shape[0] == 847
    assert rules == ["first"] and module.metadata()["text_synonyms"] == "first"
