"""The open-vocabulary protocol's evaluation side: VOC-20b-style prompts (more names than label
classes, mapped through ``prompt_to_class``), and ``python eval.py -m ckpt_path=A,B dataset=...``
ending with the one table (zegclip/engine/benchmark_table.py)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import zegclip
from zegclip.engine import evaluate as evaluate_task
from zegclip.engine.evaluate import evaluate
from zegclip.training.metrics import summarize

from .helpers import REPO_ROOT, eval_overrides, read_metrics

EXTRA = ["sky", "grass", "wall"]
"""Extra prompts of the VOC-20b-style test vocabulary: each predicts an existing class."""
EXTRA_CLASS = [0, 14, 0]  # aeroplane, person, aeroplane


def with_prompts(datamodule, prompts: list[str], mapping: list[int]):
    """The datamodule, with ``text_prompts`` / ``prompt_to_class`` as a VOC-20b datamodule has them."""
    cls = type(datamodule)
    datamodule.__class__ = type(
        f"Prompted{cls.__name__}", (cls,), {"text_prompts": tuple(prompts), "prompt_to_class": tuple(mapping)}
    )
    return datamodule


def reference_confusion(model, datamodule, prompts: list[str], mapping: list[int]) -> torch.Tensor:
    """The full-score path, written out: every prompt's scores at the original size, argmax over
    prompts, mapped to label classes, one confusion matrix (rows: ground truth)."""
    datamodule.setup("test")
    text = model.class_embeddings(prompts)
    lookup = torch.tensor(mapping)
    num_classes = len(datamodule.class_names)
    confmat = torch.zeros(num_classes, num_classes, dtype=torch.long)
    for index in range(len(datamodule.test_dataset)):
        item = datamodule.test_dataset[index]
        h, w = item["meta"]["img_size"]
        height, width = item["meta"]["ori_size"]
        scores = model.segment(item["image"][None, :, :h, :w], text_embeddings=text, seen=[], seen_bias=0.0)
        prompt = F.interpolate(scores, size=(height, width), mode="bilinear", align_corners=False).argmax(1)[
            0
        ]
        label = item["label"][:height, :width].long()
        keep = label != datamodule.ignore_index
        pairs = label[keep] * num_classes + lookup[prompt[keep]]
        confmat += torch.bincount(pairs, minlength=num_classes**2).reshape(num_classes, num_classes)
    return confmat


def test_eval_maps_extra_prompts_to_their_classes(runs, cfg_eval, monkeypatch) -> None:
    ckpt = runs.last_ckpt("voc", "fully")
    cfg = cfg_eval("voc", ckpt)
    cfg.precision = "fp32"  # the reference below is computed in fp32 (auto may choose bf16-mixed)
    names = list(cfg.dataset.class_names)
    prompts, mapping = [*names, *EXTRA], [*range(len(names)), *EXTRA_CLASS]
    built = []

    def instantiate(node, *args, **kwargs):
        out = runner_instantiate(node, *args, **kwargs)
        if str(node.get("_target_", "")).endswith("SegmentationDataModule"):
            built.append(with_prompts(out, prompts, mapping))
        return out

    runner_instantiate = evaluate_task.instantiate
    monkeypatch.setattr(evaluate_task, "instantiate", instantiate)
    evaluate(cfg)
    metrics = read_metrics(Path(cfg.paths.output_dir))
    assert metrics["seen_bias"] == 0.0  # the datamodule's vocabulary differs from the checkpoint's
    model = zegclip.load(ckpt, precision="fp32").eval()
    confmat = reference_confusion(model, built[0], prompts, mapping)
    expected = summarize(confmat, names, list(built[0].seen), list(built[0].unseen))
    assert list(metrics["IoU_per_class"]) == names  # label classes, not prompts
    for key in ("mIoU", "mIoU_gt", "fwIoU", "pAcc", "mAcc"):
        assert metrics[key] == pytest.approx(expected[key], rel=1e-6), key  # logged as float32
    # the mapping mattered: without it, the extra prompts' pixels would count for no class
    unmapped = reference_confusion(
        model, built[0], prompts, [*range(len(names)), *[len(names) - 1] * len(EXTRA)]
    )
    assert not torch.equal(unmapped, confmat)


def test_module_scores_every_prompt_and_maps_the_argmax(tiny_eval_model) -> None:
    from zegclip.training.module import ZegCLIPModule

    names = ["cat", "dog", "grass"]
    prompts, mapping = [*names, "lawn", "kitten", "meadow"], [0, 1, 2, 2, 0, 2]
    module = ZegCLIPModule(
        tiny_eval_model.config.to_dict(),
        names,
        [0, 1, 2],
        [],
        setting="fully",
        model=tiny_eval_model,
        text_prompts=prompts,
        prompt_to_class=mapping,
        evaluation={"crop": 64, "stride": 43},
    )
    torch.manual_seed(0)
    images = torch.randn(2, 3, 64, 107)
    scores = module.predict_scores(images, (70, 120))
    assert scores.shape == (2, len(prompts), 70, 120)
    best = scores.argmax(1)
    assert (best >= len(names)).any()  # some pixels' best prompt is an extra one
    assert torch.equal(module.predict_labels(images, (70, 120)), torch.tensor(mapping)[best])
    with pytest.raises(ValueError, match="prompt_to_class"):
        ZegCLIPModule(
            tiny_eval_model.config.to_dict(),
            names,
            [0],
            [],
            setting="fully",
            model=tiny_eval_model,
            text_prompts=prompts,
            prompt_to_class=[0, 1, 2, 3, 0, 0],
        )


def eval_multirun(
    sweep: Path, tmp_path: Path, data_dir: Path, ckpts: str, datasets: str
) -> subprocess.CompletedProcess:
    overrides = eval_overrides(
        "voc", ckpts, data_dir, f"hydra.sweep.dir={sweep}", f"paths.log_dir={tmp_path}"
    )
    overrides = [f"dataset={datasets}" if o.startswith("dataset=") else o for o in overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "eval.py", "-m", *overrides],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_eval_multirun_writes_the_benchmark_table(runs, data_dir: Path, tmp_path: Path) -> None:
    """Two seeds of one recipe (their run folders) and one other checkpoint (the bundled model) on
    two benchmarks: one row per recipe (mean ± std over the seeds) and one for the checkpoint,
    PC-59 before VOC-20."""
    seed0 = runs.get("voc", "fully")["dir"]
    seed1 = runs.get("voc", "fully", "seed=1")["dir"]
    other = "shapes"
    sweep = tmp_path / "sweep"
    proc = eval_multirun(sweep, tmp_path, data_dir, f"{seed0},{seed1},{other}", "voc,context")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Open-vocabulary benchmarks" in proc.stdout and "benchmark_table.md" in proc.stdout
    jobs = [read_metrics(sweep / str(n)) for n in range(6)]
    with (sweep / "benchmark_table.csv").open() as handle:
        rows = {row["model"]: row for row in csv.DictReader(handle)}
    assert len(rows) == 2
    recipe = next(row for label, row in rows.items() if label.startswith("train:"))
    assert "setting=fully" in recipe["model"] and "seed=" not in recipe["model"]
    assert recipe["n"] == "2" and recipe["seeds"] == "0,1"
    for dataset, column in (("voc", "VOC-20"), ("context", "PC-59")):
        values = np.array(
            [
                j["mIoU_gt"]
                for j in jobs
                if j["dataset"] == dataset
                and j["weights"]["checkpoint"]
                in (str(seed0 / "checkpoints" / "last.ckpt"), str(seed1 / "checkpoints" / "last.ckpt"))
            ]
        )
        assert len(values) == 2
        assert float(recipe[f"{column}_mean"]) == pytest.approx(values.mean(), abs=1e-12)
        assert float(recipe[f"{column}_std"]) == pytest.approx(values.std(ddof=1), abs=1e-12)
    single = rows[other]
    assert single["n"] == "1" and single["VOC-20_std"] == ""
    own = next(j for j in jobs if j["dataset"] == "voc" and j["weights"]["checkpoint"] == str(other))
    assert float(single["VOC-20_mean"]) == pytest.approx(own["mIoU_gt"], abs=1e-12)
    md = (sweep / "benchmark_table.md").read_text()
    assert "| model | n | seeds | PC-59 | VOC-20 |" in md
    assert (sweep / "report.md").is_file()  # the sweep report is still written beside it


def test_text_embeddings_of_a_large_vocabulary_are_computed_once(tiny_eval_model, monkeypatch) -> None:
    """847 names: the text tower runs for the first batch only; later batches reuse the embeddings."""
    from zegclip.training.module import ZegCLIPModule

    names = [f"class number {i}" for i in range(847)]
    calls = []
    encode = tiny_eval_model.text_encoder.encode_tokens
    monkeypatch.setattr(
        tiny_eval_model.text_encoder,
        "encode_tokens",
        lambda tokens: calls.append(len(tokens)) or encode(tokens),
    )
    tiny_eval_model.text_encoder.clear_cache()
    module = ZegCLIPModule(
        tiny_eval_model.config.to_dict(),
        names,
        list(range(847)),
        [],
        setting="fully",
        model=tiny_eval_model,
        templates=["a photo of a {}.", "a {} in the scene."],
        evaluation={"mode": "whole"},
    )
    images = torch.randn(1, 3, 64, 64)
    first = module.predict_labels(images, (64, 64))
    assert sum(calls) == 847 * 2  # every prompt once
    for _ in range(2):
        assert torch.equal(module.predict_labels(images, (64, 64)), first)
    assert sum(calls) == 847 * 2
    assert module.prompt_embeddings().shape == (847, tiny_eval_model.embed_dim)


def test_eval_keeps_text_embeddings_in_text_cache_dir(runs, cfg_eval, tmp_path: Path) -> None:
    cache = tmp_path / "text_cache"
    cfg = cfg_eval("context", runs.last_ckpt("voc", "fully"), f"text.cache_dir={cache}")
    evaluate(cfg)
    files = list(cache.glob("text_*.pt"))
    assert len(files) == 1 and torch.load(files[0], weights_only=True).shape[0] == len(
        cfg.dataset.class_names
    )
