"""Reading and writing checkpoints: ours, Lightning's, and (through :mod:`zegclip.model.official`)
the official mmseg releases.

* **Official** ZegCLIP releases are converted on load (:func:`zegclip.model.official.convert_official`).
* **Ours** (self-describing): ``{"format": "zegclip", "version": 1, "config": ZegCLIPConfig dict,
  "metadata": {...}, "state_dict": {...}}``. The state dict may leave out the frozen CLIP, which
  is then rebuilt from ``config.clip.weights``.
* **Lightning** checkpoints written by :class:`zegclip.training.module.ZegCLIPModule` (hyper-parameters
  ``model_config`` and ``metadata``; weights under ``model.``; ``zegclip_format``: the version).

A checkpoint that cannot be used raises :class:`~zegclip.common.errors.CheckpointError` naming the file
and what is wrong: unreadable (truncated, not a torch file), not a ZegCLIP checkpoint, written by
a newer zegclip (a format version above :data:`VERSION`), or weights that do not fit.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from zegclip.common.atomic import write_file
from zegclip.common.errors import CheckpointError, CheckpointNotFoundError
from zegclip.model.clip import ASSETS_DIR
from zegclip.model.official import convert_official, is_official_checkpoint
from zegclip.model.precision import PrecisionChoice, choose
from zegclip.model.zegclip import ZegCLIP, ZegCLIPConfig

FORMAT = "zegclip"
VERSION = 1
"""The checkpoint format this code writes and the newest it reads (our files' ``version``, the
``zegclip_format`` entry of Lightning checkpoints; checkpoints from before it existed count as 1)."""
LIGHTNING_FORMAT_KEY = "zegclip_format"
BUNDLED = {"shapes": ASSETS_DIR / "shapes_zegclip.pt"}
"""Names :func:`load` accepts besides file paths."""

# ----------------------------------------------------------------------------- our format


def save(
    model: ZegCLIP, path: str | Path, include_clip: bool = True, metadata: dict[str, Any] | None = None
) -> Path:
    """Write a self-describing checkpoint.

    With ``include_clip=False`` only what is not frozen CLIP is stored (prompts, decoder,
    and the image tower if fine-tuned); loading then rebuilds CLIP from ``config.clip.weights``,
    which must therefore point at weights.
    """
    if not include_clip and model.config.clip.weights is None:
        raise ValueError("include_clip=False needs model.config.clip.weights to name the CLIP weights")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if not include_clip:
        state = {k: v for k, v in state.items() if not is_frozen_clip_key(k, model.config)}
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": model.config.to_dict(),
        "metadata": {**model.metadata, **(metadata or {})},
        "state_dict": state,
        "includes_clip": include_clip,
    }
    return write_file(Path(path), lambda f: torch.save(payload, f), what="model file")


def is_frozen_clip_key(key: str, config: ZegCLIPConfig) -> bool:
    """Whether ``key`` (our naming) is a frozen CLIP weight."""
    if key.startswith("text_encoder."):
        return True
    return key.startswith("image_encoder.vit.") and not config.ft_backbone


def build_from_state(
    config: ZegCLIPConfig,
    state: dict[str, torch.Tensor],
    metadata: dict[str, Any],
    source: str,
    text_cache_dir: str | None = None,
) -> ZegCLIP:
    """Construct a model from a config and (possibly CLIP-less) state dict, strictly."""
    model = ZegCLIP(config, text_cache_dir=text_cache_dir)
    ours = model.state_dict()
    mismatched = [
        f"{k} {tuple(v.shape)} (model: {tuple(ours[k].shape)})"
        for k, v in state.items()
        if k in ours and tuple(v.shape) != tuple(ours[k].shape)
    ]
    if mismatched:
        raise CheckpointError(
            f"{source}: {len(mismatched)} tensor(s) do not fit the architecture its config describes "
            f"(prompt_tokens={config.prompt_tokens}, decoder_layers={config.decoder_layers}, "
            f"image_size={config.image_size}), e.g. {'; '.join(mismatched[:3])}"
        )
    missing, unexpected = model.load_state_dict(state, strict=False)
    frozen_missing = [k for k in missing if is_frozen_clip_key(k, config)]
    other_missing = [k for k in missing if k not in frozen_missing]
    if frozen_missing and config.clip.weights is None:
        raise CheckpointError(
            f"{source}: holds no CLIP weights and its config names none (model.clip.weights)"
        )
    if other_missing or unexpected:
        raise CheckpointError(
            f"{source}: weights do not fit the model: missing {other_missing[:8]}, unexpected "
            f"{unexpected[:8]}"
        )
    model.metadata = dict(metadata)
    return model


def read_checkpoint(
    path: str | Path, weights_only: bool = True
) -> tuple[ZegCLIPConfig, dict[str, torch.Tensor], dict[str, Any]]:
    """Read any supported checkpoint into (config, our state dict, metadata)."""
    obj = load_file(path, weights_only=weights_only)
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        check_version(path, obj.get("version", 1))
        return ZegCLIPConfig.from_dict(obj["config"]), obj["state_dict"], dict(obj.get("metadata") or {})
    if (
        isinstance(obj, dict)
        and isinstance(obj.get("hyper_parameters"), dict)
        and "model_config" in obj["hyper_parameters"]
    ):
        check_version(path, obj.get(LIGHTNING_FORMAT_KEY, 1))
        hp = obj["hyper_parameters"]
        state = {k.removeprefix("model."): v for k, v in obj["state_dict"].items() if k.startswith("model.")}
        metadata = dict(hp.get("metadata") or {}, global_step=obj.get("global_step"))
        return ZegCLIPConfig.from_dict(hp["model_config"]), state, metadata
    if is_official_checkpoint(obj):
        config, state, metadata, _ = convert_official(obj)
        return config, state, metadata
    keys = sorted(obj)[:10] if isinstance(obj, dict) else type(obj).__name__
    raise CheckpointError(
        f"{str(path)!r} is neither an official ZegCLIP checkpoint (state_dict with "
        "backbone.*/decode_head.*), a zegclip file (format='zegclip') nor a zegclip Lightning checkpoint; "
        f"top-level content: {keys}"
    )


def load_file(path: str | Path, weights_only: bool = True, mmap: bool = False) -> Any:
    """``torch.load`` a checkpoint file on the CPU, with errors that name the file and what to do.

    Raises:
        CheckpointNotFoundError: no such file; CheckpointError: truncated, not a torch file, or
        (``weights_only``) holding pickled objects other than plain values.
    """
    path = Path(path)
    if not path.is_file():
        where = "a folder, not a file" if path.is_dir() else "no such file"
        raise CheckpointNotFoundError(
            f"Checkpoint not found: {str(path)!r} ({where}); give a checkpoint file (a run folder's "
            "checkpoints/last.ckpt, an official ZegCLIP .pth, an exported file) or 'shapes'"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only, mmap=mmap)
    except Exception as err:
        raise CheckpointError(unreadable_message(path, err, weights_only)) from err


def unreadable_message(path: Path, err: BaseException, weights_only: bool = True) -> str:
    """Why ``torch.load`` could not read ``path``, in one sentence that names the file."""
    text = str(err)
    found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if weights_only and isinstance(err, pickle.UnpicklingError) and found:
        return (
            f"Cannot read {str(path)!r} as a torch checkpoint: it holds pickled Python objects "
            f"({found.group(1)}) beyond tensors and plain values, which zegclip checkpoints never do "
            "(another program's file?). If it is a trusted file holding pickled objects, pass "
            "weights_only=False."
        )
    size = path.stat().st_size if path.is_file() else 0
    detail = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    first = detail.group(1).strip() if detail else text.strip().split("\n")[0].split(". ")[0]
    return (
        f"Cannot read {str(path)!r} ({size:,} bytes) as a torch checkpoint: it is truncated or not a "
        f"checkpoint ({type(err).__name__}: {first}); use an intact copy (zegclip writes checkpoints "
        "atomically, so a run folder's checkpoints/last.ckpt is complete unless it was copied or edited)"
    )


def check_version(path: str | Path, version: Any) -> None:
    """Refuse a checkpoint written in a newer format than this code reads."""
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(
            f"{str(path)!r} was written by a newer zegclip (checkpoint format {version!r}; this version "
            f"reads up to {VERSION}): upgrade zegclip (pip install -U zegclip) to use it"
        )


def config_differences(
    saved: dict[str, Any], current: dict[str, Any], prefix: str = "model."
) -> list[tuple[str, Any, Any]]:
    """``(key, checkpoint's value, this run's value)`` for every (nested) key whose value differs."""
    out = []
    for key in sorted(set(saved) | set(current), key=str):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append((f"{prefix}{key}", a, b))
    return out


def describe_differences(differences: list[tuple[str, Any, Any]]) -> str:
    """``model.prompt_tokens=4 in the checkpoint, 3 in this run; ...``."""
    return "; ".join(f"{key}={a!r} in the checkpoint, {b!r} in this run" for key, a, b in differences)


def load(
    path: str | Path,
    device: str | torch.device | None = None,
    precision: str | torch.dtype | PrecisionChoice | None = "auto",
    text_cache_dir: str | None = None,
    weights_only: bool = True,
) -> ZegCLIP:
    """Load a model for inference (eval mode).

    Args:
        path: an official ZegCLIP ``.pth``, a file written by :func:`save` or ``python -m
            zegclip.export``, a zegclip Lightning ``.ckpt``, or a bundled name (``"shapes"``).
        device: e.g. ``"cuda"`` (None: the CPU).
        precision: ``"auto"`` (bf16 where ``device`` computes it natively, else fp32; see
            :mod:`zegclip.model.precision`), ``"fp32"``, ``"bf16"``, ``"fp16"``, or None (as
            saved). The choice and its reason are in ``model.precision``.
    """
    choice = choose(precision, device or "cpu")  # a bad name fails before the file is read
    source = str(path)
    if isinstance(path, str) and path in BUNDLED:
        path = BUNDLED[path]
    config, state, metadata = read_checkpoint(path, weights_only=weights_only)
    model = build_from_state(config, state, metadata, source, text_cache_dir)
    if choice.dtype is not None:
        model = model.to(choice.dtype)
    if device is not None:
        model = model.to(device)
    model.precision = choice
    return model.eval()
