"""Checkpoints a run cannot use: one message each, naming the file and the difference, before any step."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra_compose import compose_config
from PIL import Image
from scenarios import SHORT, Run, train

import zegclip
from zegclip.common.errors import CheckpointError, CheckpointNotFoundError
from zegclip.model.checkpoint import LIGHTNING_FORMAT_KEY, VERSION


class OtherModel(L.LightningModule):
    """Some other program's LightningModule."""

    def __init__(self, hidden: int = 4) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(2, hidden)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return self.layer(batch).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(torch.randn(4, 2), batch_size=2)


def truncated(good: Path, out: Path) -> Path:
    out.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    return out


def not_a_checkpoint(good: Path, out: Path) -> Path:
    Image.new("RGB", (8, 8)).save(out, format="PNG")
    return out


def other_model(good: Path, out: Path) -> Path:
    trainer = L.Trainer(
        max_steps=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=out.parent,
        accelerator="cpu",
    )
    trainer.fit(OtherModel())
    trainer.save_checkpoint(out)
    return out


def newer_format(good: Path, out: Path) -> Path:
    ckpt = torch.load(good, map_location="cpu", weights_only=True)
    ckpt[LIGHTNING_FORMAT_KEY] = VERSION + 1  # what a future version writes
    torch.save(ckpt, out)
    return out


def exported(good: Path, out: Path) -> Path:
    return zegclip.save(zegclip.load(str(good)), out)


def same_file(good: Path, out: Path) -> Path:
    return good


# (name, how to make the file, extra overrides of the resumed run,
#  the message expected after "ckpt_path=<file>")
CASES: list[tuple[str, Callable[[Path, Path], Path], list[str], str]] = [
    (
        "truncated",
        truncated,
        [],
        r"cannot resume from ckpt_path: Cannot read '{f}' \([\d,]+ bytes\) as a torch "
        r"checkpoint: it is truncated or not a checkpoint \(RuntimeError: PytorchStreamReader failed reading "
        r"zip archive: failed finding central directory\); use an intact copy",
    ),
    (
        "not a checkpoint",
        not_a_checkpoint,
        [],
        r"cannot resume from ckpt_path: Cannot read '{f}' \(\d+ bytes\) as a "
        r"torch checkpoint: it is truncated or not a checkpoint \(UnpicklingError",
    ),
    (
        "another model's",
        other_model,
        [],
        r"ckpt_path={f} is a Lightning checkpoint of another model \(kwargs: hidden; "
        r"no model_config\), not of a zegclip train.py run",
    ),
    (
        "another architecture",
        same_file,
        ["model.prompt_tokens=3"],
        r"ckpt_path={f} was trained with another "
        r"architecture: model.prompt_tokens=4 in the checkpoint, 3 in this run. Resuming continues that run: "
        r"give the checkpoint's values \(model.prompt_tokens=4\), or leave ckpt_path out to start a new run",
    ),
    (
        "another dataset's vocabulary",
        same_file,
        ["dataset=shapes_hard"],
        r"ckpt_path={f} was trained on another "
        r"vocabulary: dataset 'shapes' \(16 classes: red circle, .*\), this run 'shapes_hard' \(8 classes: "
        r"circle, .*\); class 0 is 'red circle' there, 'circle' here. Resume with the checkpoint's dataset",
    ),
    (
        "another zero-shot split",
        same_file,
        ["dataset.unseen=[1,2]"],
        r"ckpt_path={f} was trained with another "
        r"zero-shot split: seen classes \[1, 2, 3, 4, 6, .*\] in the checkpoint, \[0, 3, 4, .*\] in this run",
    ),
    (
        "a newer format",
        newer_format,
        [],
        rf"'{{f}}' was written by a newer zegclip \(checkpoint format {VERSION + 1}; "
        rf"this version reads up to {VERSION}\): upgrade zegclip",
    ),
    (
        "an exported model file",
        exported,
        [],
        r"ckpt_path={f} is an exported zegclip model file: it has no optimizer "
        r"or training-loop state to resume; start a new run from its weights with init_from=PATH",
    ),
    (
        "a missing file",
        lambda good, out: out,
        [],
        r"ckpt_path={f}: no such file; resume from the checkpoint the "
        r"stopped run named",
    ),
]


@pytest.mark.parametrize(("name", "make", "extra", "expected"), CASES, ids=[c[0] for c in CASES])
def test_a_checkpoint_the_run_cannot_resume_fails_before_any_step(
    name: str,
    make: Callable[[Path, Path], Path],
    extra: list[str],
    expected: str,
    one_step: Run,
    tmp_path: Path,
) -> None:
    from zegclip.engine.train import train as run_train

    bad = make(one_step.last, tmp_path / "bad.ckpt")
    out = tmp_path / "run"
    cfg = compose_config("train", [*SHORT, f"ckpt_path={bad}", *extra], out)
    error = CheckpointNotFoundError if name == "a missing file" else CheckpointError
    with pytest.raises(error) as info:
        run_train(cfg)
    message = str(info.value)
    assert re.fullmatch(expected.replace("{f}", re.escape(str(bad))) + ".*", message), message
    assert "\n" not in message
    assert not (out / "checkpoints" / "last.ckpt").exists()  # not one step was trained
    assert json.loads((out / "run.json").read_text())["status"] == "failed"


def test_the_resumable_checkpoint_itself_passes_the_check(one_step: Run, tmp_path: Path) -> None:
    from zegclip.training.module import ZegCLIPModule
    from zegclip.training.resume import check_resume

    hp = torch.load(one_step.last, map_location="cpu", weights_only=True)["hyper_parameters"]
    module = ZegCLIPModule(**{k: v for k, v in hp.items() if k != "metadata"})
    check_resume(str(one_step.last), module)  # no error: the check refuses only what cannot resume
    module.hparams["model_config"]["grad_checkpointing"] = True  # recomputation may change on resume
    check_resume(str(one_step.last), module)


def test_init_from_another_architecture_names_the_hyper_parameter(one_step: Run, tmp_path: Path) -> None:
    from zegclip.engine.train import train as run_train

    cfg = compose_config(
        "train",
        [*SHORT, "setting=transductive", f"init_from={one_step.last}", "model.prompt_tokens=3"],
        tmp_path / "run",
    )
    with pytest.raises(
        CheckpointError,
        match=rf"^init_from='{re.escape(str(one_step.last))}' does not fit this model: "
        r"model.prompt_tokens=4 in the checkpoint, 3 in this run",
    ):
        run_train(cfg)


def test_eval_and_load_refuse_a_newer_format(one_step: Run, tmp_path: Path) -> None:
    newer = newer_format(one_step.last, tmp_path / "newer.ckpt")
    with pytest.raises(CheckpointError, match=rf"'{re.escape(str(newer))}' was written by a newer zegclip"):
        zegclip.load(str(newer))


@pytest.mark.parametrize(
    ("probe", "expected"),
    [
        (
            "truncated",
            r"CheckpointError: cannot resume from ckpt_path: Cannot read '{f}' .* it is truncated .*",
        ),
        (
            "model.prompt_tokens=3",
            r"CheckpointError: ckpt_path={f} was trained with another architecture: "
            r"model.prompt_tokens=4 in the checkpoint, 3 in this run\..*",
        ),
    ],
)
def test_the_issue_probes_end_in_one_line_with_exit_code_2(
    probe: str, expected: str, one_step: Run, tmp_path: Path
) -> None:
    ckpt = truncated(one_step.last, tmp_path / "last.ckpt") if probe == "truncated" else one_step.last
    extra = [] if probe == "truncated" else [probe]
    run = train(tmp_path / "run", f"ckpt_path={ckpt}", *extra)
    assert run.returncode == 2, run.output[-3000:]
    assert "Traceback" not in run.output
    assert re.fullmatch(expected.replace("{f}", re.escape(str(ckpt))), run.output.strip().splitlines()[-1])
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()
