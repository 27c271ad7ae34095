"""Build the CLIP towers with open_clip and load their weights.

Weights can come from:

* an OpenAI TorchScript archive (``ViT-B-16.pt``, what the official ZegCLIP code loads);
* a plain state-dict file (``.pt``/``.pth``/``.bin``, optionally under a ``state_dict`` key), or a
  ``.safetensors`` file (open_clip's Hugging Face repositories hold both);
* a compact file written by :func:`save_compact_clip` (only the used token-embedding rows);
* an open_clip pretrained tag such as ``"openai"`` or ``"laion2b_s34b_b88k"`` (needs a network);
* ``"zegclip:NAME"``, a file bundled in ``zegclip/assets`` (``zegclip:shapes_clip``).

The architecture is an open_clip model name (``ViT-B-16``, ``ViT-L-14``, ...) or an inline
``{"embed_dim", "vision_cfg", "text_cfg"}`` dict. The vision ``image_size`` is set to the
segmentation crop size, and the pretrained positional embedding is resized to that grid
**bilinearly** (align_corners False), as the official code does (open_clip itself would use
bicubic with antialiasing).
"""

from __future__ import annotations

import copy
import math
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import open_clip
import torch
import torch.nn.functional as F
from open_clip.model import CLIP

from zegclip.common.atomic import write_file
from zegclip.common.errors import CheckpointError, CheckpointNotFoundError, ConfigError

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
COMPACT_FORMAT = "zegclip.compact_clip"
OPENAI_DOWNLOAD_HINT = (
    "The OpenAI weights are the TorchScript files open_clip calls 'openai' "
    "(e.g. ViT-B-16.pt, as used by the official ZegCLIP repo, which expects them in pretrained/); "
    "download one on a machine with internet access and point the key at it."
)
_TORCHSCRIPT_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")


@dataclass
class CLIPConfig:
    """What CLIP to build and which weights to put in it.

    Attributes:
        model_name: open_clip architecture name, used when ``arch`` is None.
        arch: inline open_clip architecture ``{"embed_dim", "vision_cfg", "text_cfg"}``.
        weights: file path, ``zegclip:NAME``, open_clip pretrained tag, or None (random init).
        image_size: training crop size; sets the positional-embedding grid (None: keep).
        quick_gelu: QuickGELU activation (True for OpenAI weights).
    """

    model_name: str = "ViT-B-16"
    arch: dict[str, Any] | None = None
    weights: str | None = None
    image_size: int | None = None
    quick_gelu: bool = True
    config_key: str = field(default="model.clip.weights", repr=False)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("config_key")
        return out


def architecture(config: CLIPConfig) -> dict[str, Any]:
    """The open_clip architecture dict, with the vision image size set to ``config.image_size``."""
    if config.arch is not None:
        arch = copy.deepcopy(dict(config.arch))
    else:
        found = open_clip.get_model_config(config.model_name)
        if found is None:
            raise ConfigError(
                f"Unknown open_clip model name {config.model_name!r} (model.clip.model_name); "
                f"known ViTs include {sorted(n for n in open_clip.list_models() if n.startswith('ViT'))[:12]}"
            )
        arch = copy.deepcopy(found)
    for key in ("embed_dim", "vision_cfg", "text_cfg"):
        if key not in arch:
            raise ConfigError(f"CLIP architecture is missing {key!r}: got keys {sorted(arch)}")
    arch["vision_cfg"] = dict(arch["vision_cfg"])
    arch["text_cfg"] = dict(arch["text_cfg"])
    if config.image_size is not None:
        arch["vision_cfg"]["image_size"] = int(config.image_size)
    return arch


def create_clip(config: CLIPConfig) -> CLIP:
    """Build the CLIP model (both towers) and load its weights. Returned in eval mode."""
    weights = config.weights
    state_dict = None
    if weights is not None:
        path = resolve_weights_path(weights)
        if path is not None:
            if not path.is_file():
                raise CheckpointNotFoundError(
                    f"CLIP weights file not found: {str(path)!r} (set by config key "
                    f"{config.config_key}). {OPENAI_DOWNLOAD_HINT}"
                )
            state_dict, file_arch = read_clip_weights(path)
            if config.arch is None and file_arch is not None:
                config = CLIPConfig(**{**config.to_dict(), "arch": file_arch})
        else:
            return _create_from_pretrained_tag(config)

    arch = architecture(config)
    model = CLIP(**arch, quick_gelu=config.quick_gelu)
    if state_dict is not None:
        load_clip_state_dict(model, state_dict, source=str(weights))
    return model.eval()


def resolve_weights_path(weights: str) -> Path | None:
    """Path of a weights file, or None when ``weights`` is an open_clip pretrained tag."""
    if weights.startswith("zegclip:"):
        return ASSETS_DIR / f"{weights.split(':', 1)[1]}.pt"
    looks_like_path = any(s in weights for s in ("/", "\\")) or weights.endswith(
        (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
    )
    return Path(weights).expanduser() if looks_like_path or Path(weights).exists() else None


def _create_from_pretrained_tag(config: CLIPConfig) -> CLIP:
    if config.arch is not None:
        raise ValueError(
            f"An open_clip pretrained tag ({config.weights!r}) needs "
            "model.clip.model_name, not an inline arch"
        )
    try:
        known = open_clip.get_pretrained_cfg(config.model_name, str(config.weights))
        if known:  # fetch the file (or find it in the cache) first: offline fails at once, not after building
            open_clip.download_pretrained(known)
        model = open_clip.create_model(
            config.model_name, pretrained=config.weights, force_quick_gelu=config.quick_gelu
        )
    except Exception as err:  # network or unknown tag: say which key to change
        raise RuntimeError(
            f"Could not get open_clip weights {config.model_name}/{config.weights!r} "
            f"(config key {config.config_key}): {err}. Without a network, give a local file instead. "
            f"{_download_hint(config.model_name, str(config.weights))}"
        ) from err
    if config.image_size is not None:
        state = model.state_dict()
        resized = CLIP(**architecture(config), quick_gelu=config.quick_gelu)
        load_clip_state_dict(resized, state, source=str(config.weights))
        model = resized
    return model.eval()


def _download_hint(model_name: str, tag: str) -> str:
    """Where a user without network gets the file for an open_clip pretrained tag."""
    if tag == "openai":
        return OPENAI_DOWNLOAD_HINT
    try:
        hub = (open_clip.get_pretrained_cfg(model_name, tag) or {}).get("hf_hub", "")
    except Exception:
        hub = ""
    if not hub:
        known = [t for m, t in open_clip.list_pretrained() if m == model_name]
        return f"Known open_clip tags for {model_name}: {known}."
    repo = hub.strip("/")
    return (
        f"The file is open_clip_model.safetensors (or open_clip_pytorch_model.bin) of "
        f"https://huggingface.co/{repo}: download it on a machine with internet access and set "
        f"model.clip.weights=/path/to/open_clip_model.safetensors."
    )


def read_clip_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """Read a CLIP state dict from any supported file; returns (state dict, architecture or None)."""
    if path.suffix == ".safetensors":  # e.g. open_clip_model.safetensors from a Hugging Face hub repo
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device="cpu")
        except Exception as err:
            raise CheckpointError(
                f"Cannot read CLIP weights from {str(path)!r} (safetensors): {err}"
            ) from err
        return {
            k.removeprefix("module."): v for k, v in state.items() if k not in _TORCHSCRIPT_EXTRA_KEYS
        }, None
    if zipfile.is_zipfile(path) and _is_torchscript(path):
        scripted = torch.jit.load(str(path), map_location="cpu")
        state = {k: v.float() for k, v in scripted.state_dict().items()}
        return {k: v for k, v in state.items() if k not in _TORCHSCRIPT_EXTRA_KEYS}, None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"Cannot read CLIP weights from {str(path)!r}: {err}") from err
    if isinstance(obj, dict) and obj.get("format") == COMPACT_FORMAT:
        return expand_compact_state_dict(obj), obj["arch"]
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{str(path)!r} is not a CLIP state dict (expected a dict of tensors)")
    state = {k.removeprefix("module."): v for k, v in obj.items()}
    return {k: v for k, v in state.items() if k not in _TORCHSCRIPT_EXTRA_KEYS}, None


def _is_torchscript(path: Path) -> bool:
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/", 1)[-1].startswith("code/") for name in archive.namelist())


def load_clip_state_dict(model: CLIP, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state_dict`` into ``model`` strictly, resizing the positional embedding if needed."""
    state = dict(state_dict)
    key = "visual.positional_embedding"
    target = model.visual.positional_embedding
    if key in state and state[key].shape != target.shape:
        state[key] = resize_positional_embedding(state[key], grid_size(model))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "attn_mask"]
    if missing or unexpected:
        raise ValueError(
            f"CLIP weights {source!r} do not match the architecture: missing {missing[:8]}, "
            f"unexpected {unexpected[:8]} (check model.clip.model_name / model.clip.arch)"
        )


def grid_size(model: CLIP) -> tuple[int, int]:
    """The patch grid (rows, cols) the positional embedding is laid out for."""
    grid = model.visual.grid_size
    return (grid, grid) if isinstance(grid, int) else (int(grid[0]), int(grid[1]))


def resize_positional_embedding(pos: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Resize a ``(1 + h*w, D)`` positional embedding to ``(1 + grid[0]*grid[1], D)`` bilinearly."""
    cls_pos, spatial = pos[:1], pos[1:]
    old = math.isqrt(spatial.shape[0])
    if old * old != spatial.shape[0]:
        raise ValueError(f"Positional embedding of {spatial.shape[0]} patches is not a square grid")
    spatial = spatial.reshape(1, old, old, -1).permute(0, 3, 1, 2)
    spatial = F.interpolate(spatial.float(), size=grid, mode="bilinear", align_corners=False)
    spatial = spatial.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1).to(pos.dtype)
    return torch.cat([cls_pos, spatial], dim=0)


def save_compact_clip(
    model: CLIP,
    arch: dict[str, Any],
    path: str | Path,
    token_ids: list[int] | torch.Tensor,
    dtype: torch.dtype = torch.float32,
    extra: dict[str, Any] | None = None,
) -> None:
    """Save ``model`` keeping only the token-embedding rows in ``token_ids``.

    Every other row loads back as zeros, so only texts made of those tokens are encoded exactly.
    """
    ids = torch.as_tensor(sorted(set(int(i) for i in token_ids)), dtype=torch.long)
    state = {k: v.detach().to(dtype) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    table = state.pop("token_embedding.weight")
    state.pop("attn_mask", None)
    payload = {
        "format": COMPACT_FORMAT,
        "arch": arch,
        "vocab_size": table.shape[0],
        "state_dict": state,
        "token_ids": ids,
        "token_rows": table[ids].clone(),
        **(extra or {}),
    }
    write_file(Path(path), lambda f: torch.save(payload, f), what="CLIP weights file")


def expand_compact_state_dict(payload: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`save_compact_clip`: the full state dict in float32."""
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    rows = payload["token_rows"].float()
    table = torch.zeros(payload["vocab_size"], rows.shape[1])
    table[payload["token_ids"]] = rows
    state["token_embedding.weight"] = table
    return state
