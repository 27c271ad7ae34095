"""Numerical faults, unwritable or failing checkpoint storage, shared run folders, bad data."""

from __future__ import annotations

import errno
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scenarios import REPO_ROOT, SHORT, environment, train

from zegclip.common.errors import CheckpointWriteError, RunFolderInUseError
from zegclip.engine import run_folder
from zegclip.engine.resolvers import run_id
from zegclip.training.checkpointing import AtomicCheckpointIO


def test_nan_loss_stops_training_naming_the_step_and_saves_no_nan_model(tmp_path: Path) -> None:
    run = train(
        tmp_path / "nan", "optimizer.lr=1e4", "optimizer.warmup_steps=0", "checkpoint_every_n_steps=1"
    )
    assert run.returncode == 1, run.output[-3000:]
    match = re.search(r"NonFiniteLossError: the training loss is (nan|inf|-inf) at step (\d+)", run.output)
    assert match, run.output[-3000:]
    nan_step = int(match.group(2))
    assert f"Last good checkpoint: {run.last}" in run.output
    assert f"or resume from it (ckpt_path={run.last})" in run.output  # the command to continue
    assert run.step() == nan_step - 1  # the update that would have used the NaN loss never happened
    state = torch.load(run.last, map_location="cpu", weights_only=True)["state_dict"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    assert run.metrics() is None  # no test of a diverged model
    status = run.status()
    assert status["status"] == "failed" and "NonFiniteLossError" in status["error"]


def test_unwritable_checkpoint_folder_fails_at_start(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "checkpoints").write_text("not a folder")  # root ignores permission bits; this fails for anyone
    run = train(folder)
    assert run.returncode == 1, run.output[-3000:]
    assert f"CheckpointWriteError: cannot write checkpoints into {folder / 'checkpoints'}" in run.output
    assert "Traceback" not in run.output  # one clear line, not a stack trace
    assert run.status()["status"] == "failed" and "CheckpointWriteError" in run.status()["error"]


def test_a_failed_checkpoint_write_raises_and_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch
) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1}, path)

    def disk_full(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(
        CheckpointWriteError, match=f"could not write checkpoint {path}: No space left on device"
    ):
        io.save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1}  # the good checkpoint is untouched
    assert list(tmp_path.iterdir()) == [path]  # and no temporary file is left behind


def test_run_ids_differ_within_one_second_and_a_folder_has_one_owner(tmp_path: Path) -> None:
    ids = {run_id() for _ in range(200)}
    assert len(ids) == 200
    run_folder.claim(tmp_path / "a", "train")
    with pytest.raises(RunFolderInUseError, match="already belongs to another run"):
        run_folder.claim(tmp_path / "a", "train")


def test_two_runs_started_together_get_their_own_folders(tmp_path: Path) -> None:
    env = environment()
    command = [
        sys.executable,
        "train.py",
        *SHORT,
        "trainer.max_steps=2",
        "test_after_training=false",
        f"paths.log_dir={tmp_path}",
    ]
    procs = [
        subprocess.Popen(
            [*command, f"seed={s}"], cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        for s in (1, 2)
    ]
    for p in procs:
        assert p.wait(timeout=600) == 0, p.stderr.read().decode()[-3000:] if p.stderr else ""
    folders = sorted((tmp_path / "train" / "runs").iterdir())
    assert len(folders) == 2
    seeds = {json.loads((f / "run.json").read_text())["command"].split("seed=")[-1] for f in folders}
    assert seeds == {"1", "2"}
    for folder in folders:  # each folder holds one run's config and checkpoint
        resolved = (folder / "config_resolved.yaml").read_text()
        seed = json.loads((folder / "run.json").read_text())["command"].split("seed=")[-1]
        assert f"seed: {seed}\n" in resolved
        assert (folder / "checkpoints" / "last.ckpt").is_file()


# -- bad data -----------------------------------------------------------------------------------


@pytest.fixture()
def voc_tree(tmp_path: Path) -> Path:
    from integration.helpers import synthetic

    return synthetic.make_voc(tmp_path / "data")


def test_a_bad_validation_file_fails_before_the_first_step(
    voc_tree: Path, tmp_path: Path, monkeypatch
) -> None:
    from integration.helpers import compose_config, train_overrides

    from zegclip.data.errors import DataError
    from zegclip.engine.train import train as run_train

    monkeypatch.setenv("ZEGCLIP_CACHE_DIR", str(tmp_path / "cache"))
    bad = voc_tree / "VOCdevkit" / "VOC2012" / "SegmentationClass" / "2007_000042.png"
    label = np.array(Image.open(bad))
    label[5, 5] = 99  # not a VOC class id
    Image.fromarray(label).save(bad)
    cfg = compose_config(
        "train", train_overrides("voc", "inductive", voc_tree, "trainer.max_steps=50"), tmp_path / "run"
    )
    with pytest.raises(DataError, match=r"1 of 2 voc val samples cannot be used:\n.*2007_000042.png"):
        run_train(cfg)
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()  # not one step was trained
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "failed"


def test_the_validation_check_is_cached_and_notices_changed_files(
    voc_tree: Path, tmp_path: Path, monkeypatch
) -> None:
    from zegclip.data import SegmentationDataModule, VOCDataset
    from zegclip.data.verify import verify_samples

    monkeypatch.setenv("ZEGCLIP_CACHE_DIR", str(tmp_path / "cache"))
    dm = SegmentationDataModule(VOCDataset, voc_tree, class_names=[f"c{i}" for i in range(20)], num_workers=0)
    dm.setup("validate")
    reads = []
    original = VOCDataset.load_sample
    monkeypatch.setattr(VOCDataset, "load_sample", lambda self, i: reads.append(i) or original(self, i))
    assert verify_samples(dm.val_dataset, "voc val") == 2 and len(reads) == 2
    verify_samples(dm.val_dataset, "voc val")
    assert len(reads) == 2  # second run: only stat() calls
    image = voc_tree / "VOCdevkit" / "VOC2012" / "JPEGImages" / "2007_000039.jpg"
    image.write_bytes(image.read_bytes()[:100])  # truncated after it was checked
    with pytest.raises(Exception, match="2007_000039"):
        verify_samples(dm.val_dataset, "voc val")
