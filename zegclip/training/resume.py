"""Is ``ckpt_path`` a checkpoint this training run can continue? Checked before any training step.

Resuming continues one run: the checkpoint must be readable, a Lightning checkpoint of a
``train.py`` run (not an official release, an exported model file or another program's
checkpoint), of a format this code reads, with the same architecture and the same vocabulary and
zero-shot split. Each problem raises :class:`~zegclip.common.errors.CheckpointError` naming the file and
the difference (the hyper-parameter with both values) and what to do instead; without this check
Lightning would fail later with a torch or ``load_state_dict`` error that names neither.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zegclip.common.errors import CheckpointError, CheckpointNotFoundError
from zegclip.model.checkpoint import (
    FORMAT,
    LIGHTNING_FORMAT_KEY,
    check_version,
    config_differences,
    describe_differences,
    is_frozen_clip_key,
    load_file,
)
from zegclip.model.official import is_official_checkpoint
from zegclip.model.zegclip import ZegCLIPConfig

LIGHTNING_NAMES = ("last", "best", "hpc", "registry")
"""``ckpt_path`` values Lightning resolves itself (left to it)."""
MAY_DIFFER = ("model.grad_checkpointing", "model.clip.weights")
"""Model keys a resumed run may change: recomputation (same results) and where the CLIP weights
file lives (the frozen weights are in the checkpoint unless ``save_frozen_clip=false``)."""


def check_resume(path: str | None, module: Any) -> None:
    """Raise :class:`CheckpointError` unless ``path`` can resume ``module`` (a ZegCLIPModule)."""
    if path is None or str(path) in LIGHTNING_NAMES:
        return
    file = Path(str(path))
    if file.is_dir():
        last = file / "checkpoints" / "last.ckpt"
        hint = f"ckpt_path={last}" if last.is_file() else "a checkpoint file (RUN/checkpoints/last.ckpt)"
        raise CheckpointNotFoundError(f"ckpt_path={path} is a folder: give {hint}")
    if not file.is_file():
        raise CheckpointNotFoundError(
            f"ckpt_path={path}: no such file; resume from the checkpoint the stopped run named (its run "
            "folder's checkpoints/last.ckpt), or leave ckpt_path out to start a new run"
        )
    ckpt = _read(file)
    _check_kind(path, ckpt)
    check_version(file, ckpt.get(LIGHTNING_FORMAT_KEY, 1))
    hp = ckpt["hyper_parameters"]
    current = dict(module.hparams)

    saved_model, our_model = _normalized(hp["model_config"]), _normalized(current["model_config"])
    differences = [d for d in config_differences(saved_model, our_model) if d[0] not in MAY_DIFFER]
    if differences:
        values = " ".join(
            f"{key}={saved}" for key, saved, _ in differences if not isinstance(saved, (dict, list))
        )
        raise CheckpointError(
            f"ckpt_path={path} was trained with another architecture: {describe_differences(differences)}. "
            f"Resuming continues that run: give the checkpoint's values ({values or 'see above'}), or leave "
            "ckpt_path out to start a new run"
        )
    _check_vocabulary(path, hp, module)
    _check_tensors(path, ckpt["state_dict"], module)


def _normalized(model_config: dict[str, Any]) -> dict[str, Any]:
    """The config with every default filled in (so that a key left out equals its default)."""
    try:
        return ZegCLIPConfig.from_dict(model_config).to_dict()
    except (TypeError, ValueError):
        return dict(model_config)


def _read(file: Path) -> dict[str, Any] | Any:
    try:  # memory-mapped: the tensors' shapes are read, not their data
        return load_file(file, weights_only=True, mmap=True)
    except CheckpointError:
        try:
            return load_file(file, weights_only=True)  # e.g. a legacy (non-zip) torch file
        except CheckpointError as err:
            raise CheckpointError(f"cannot resume from ckpt_path: {err}") from err.__cause__


def _check_kind(path: str, ckpt: Any) -> None:
    instead = (
        "start a new run from its weights with init_from=PATH, or evaluate it with eval.py ckpt_path=PATH"
    )
    if not isinstance(ckpt, dict):
        raise CheckpointError(
            f"ckpt_path={path} is not a checkpoint of a train.py run (it holds a {type(ckpt).__name__})"
        )
    if ckpt.get("format") == FORMAT:
        raise CheckpointError(
            f"ckpt_path={path} is an exported zegclip model file: it has no optimizer or training-loop state "
            f"to resume; {instead}"
        )
    if is_official_checkpoint(ckpt):
        raise CheckpointError(
            f"ckpt_path={path} is an official ZegCLIP release, not a train.py checkpoint; {instead}"
        )
    hp = ckpt.get("hyper_parameters")
    if "loops" not in ckpt or "state_dict" not in ckpt:
        raise CheckpointError(
            f"ckpt_path={path} is not a Lightning training checkpoint (top-level keys: "
            f"{sorted(map(str, ckpt))[:8]}); "
            "resume from a run folder's checkpoints/last.ckpt"
        )
    if not isinstance(hp, dict) or not isinstance(hp.get("model_config"), dict):
        name = ckpt.get("hparams_name") or "no hyper-parameters"
        keys = sorted(hp)[:8] if isinstance(hp, dict) else []
        raise CheckpointError(
            f"ckpt_path={path} is a Lightning checkpoint of another model "
            f"({name}{': ' + ', '.join(keys) if keys else ''}; "
            "no model_config), not of a zegclip train.py run"
        )


def _names(names: list[str]) -> str:
    shown = ", ".join(map(str, names[:6]))
    return f"{len(names)} classes: {shown}{', ...' if len(names) > 6 else ''}"


def _check_vocabulary(path: str, hp: dict[str, Any], module: Any) -> None:
    saved, ours = list(hp.get("class_names") or []), list(module.class_names)
    dataset = hp.get("dataset_name")
    if saved != ours:
        first = next((i for i, (a, b) in enumerate(zip(saved, ours)) if a != b), min(len(saved), len(ours)))
        at = saved[first] if first < len(saved) else "(none)"
        here = ours[first] if first < len(ours) else "(none)"
        raise CheckpointError(
            f"ckpt_path={path} was trained on another vocabulary: dataset {dataset!r} ({_names(saved)}), "
            f"this run {module.hparams.get('dataset_name')!r} ({_names(ours)}); class {first} is {at!r} "
            f"there, {here!r} here. Resume with the checkpoint's dataset, or start a new run from its "
            "weights with init_from=PATH"
        )
    for key in ("seen", "unseen"):
        a, b = [int(i) for i in hp.get(key) or []], [int(i) for i in getattr(module, key)]
        if a != b:
            raise CheckpointError(
                f"ckpt_path={path} was trained with another zero-shot split: {key} classes {a} in the "
                f"checkpoint, {b} in this run (dataset.unseen); resume with the checkpoint's split"
            )


def _check_tensors(path: str, state: dict[str, Any], module: Any) -> None:
    """Last line of defence (an edited checkpoint): every trainable tensor is there, in its shape."""
    config = module.model.config
    problems = []
    for key, value in module.state_dict().items():
        if key.startswith("model.") and is_frozen_clip_key(key.removeprefix("model."), config):
            continue  # rebuilt from the CLIP weights when a checkpoint leaves them out
        if key not in state:
            problems.append(f"{key} missing")
        elif tuple(state[key].shape) != tuple(value.shape):
            problems.append(
                f"{key} {tuple(state[key].shape)} in the checkpoint, {tuple(value.shape)} in this run"
            )
    if problems:
        raise CheckpointError(f"ckpt_path={path} does not fit this model: {'; '.join(problems[:4])}")
