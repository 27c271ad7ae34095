"""The embedded default: `python train.py` (shapes world) composes, trains a few steps, and the
bundled shapes model loads and segments; the quick-start notebook executes headless."""

from __future__ import annotations

from pathlib import Path

import torch
from hydra_compose import compose_config

import zegclip
from zegclip.data.shapes import ShapesWorld
from zegclip.engine.train import train
from zegclip.model.preprocess import normalize as normalize_image

REPO = Path(__file__).resolve().parents[1]


def compose_train(tmp_path: Path, *overrides: str):
    return compose_config("train", overrides, tmp_path)


def test_default_config_is_the_shapes_world(tmp_path):
    cfg = compose_train(tmp_path)
    assert cfg.dataset.name == "shapes" and cfg.setting == "inductive"
    assert cfg.model.clip.weights == "zegclip:shapes_clip" and cfg.model.image_size == 64
    assert [cfg.dataset.class_names[i] for i in cfg.dataset.unseen] == [
        "red circle",
        "green square",
        "blue triangle",
        "yellow star",
    ]
    assert cfg.trainer.max_steps == 1000
    # the documented deviations of the shapes recipe (README, conf/experiment/shapes_inductive.yaml)
    assert cfg.loss.name == "cross_entropy" and cfg.evaluation.seen_bias == 0.0


def test_paper_recipe_is_untouched_outside_the_shapes_world(tmp_path):
    cfg = compose_train(tmp_path, "dataset=voc")
    assert cfg.loss.name == "focal_dice" and cfg.evaluation.seen_bias is None  # None: 0.1 when inductive


def test_default_config_trains_a_few_steps(tmp_path):
    torch.set_num_threads(1)
    cfg = compose_train(
        tmp_path,
        "trainer.max_steps=4",
        "trainer.val_check_interval=2",
        "dataset.layout.train_size=64",
        "dataset.layout.val_size=20",
        "dataset.layout.test_size=20",
        "dataset.batch_size=8",
    )
    summary = train(cfg)
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert set(summary["IoU_per_class"]) == set(cfg.dataset.class_names)
    assert 0.0 <= summary["mIoU_seen"] <= 1.0 and 0.0 <= summary["mIoU_unseen"] <= 1.0
    assert (tmp_path / "metrics.json").is_file()


def test_bundled_shapes_model_segments_unseen_classes():
    model = zegclip.load("shapes")
    meta = model.metadata
    assert meta["dataset"] == "shapes" and meta["setting"] == "inductive"
    names, seen, unseen = meta["class_names"], meta["seen"], meta["unseen"]
    world = ShapesWorld("compositional", seed=777)  # never used in training
    samples = [world.sample(i) for i in range(64)]
    x = torch.stack([normalize_image(im) for im, _ in samples])
    y = torch.stack([torch.from_numpy(lab).long() for _, lab in samples])
    pred = model.segment(x, names, seen=seen, seen_bias=meta["seen_bias"], mode="whole").argmax(1)
    on_unseen = torch.isin(y, torch.tensor(unseen))
    # pixels of classes never labelled in training mostly get their own (unseen) name
    assert (pred[on_unseen] == y[on_unseen]).float().mean() > 0.6  # chance: 1/16
    on_seen = torch.isin(y, torch.tensor(seen))
    assert (pred[on_seen] == y[on_seen]).float().mean() > 0.6
    assert pred.shape == y.shape


def test_quickstart_notebook_executes(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(REPO / "notebooks" / "quickstart.ipynb", as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = "".join(
        o.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for o in cell.get("outputs", [])
    )
    assert "mIoU(U)" in outputs and "unseen" in outputs
    errors = [
        o for cell in notebook.cells for o in cell.get("outputs", []) if o.get("output_type") == "error"
    ]
    assert not errors
