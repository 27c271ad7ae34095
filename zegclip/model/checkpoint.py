"""Checkpoint files: the official mmseg format, ours, and Lightning's.

* **Official** ZegCLIP releases: ``{"meta": {..., "config": <mmseg config as Python text>},
  "state_dict": {"backbone.*", "text_encoder.*", "decode_head.*"}}``. The architecture is
  inferred from tensor shapes (head counts from the config text, default ``width // 64``).
* **Ours** (self-describing): ``{"format": "zegclip", "version": 1, "config": ZegCLIPConfig dict,
  "metadata": {...}, "state_dict": {...}}``. The state dict may leave out the frozen CLIP, which
  is then rebuilt from ``config.clip.weights``.
* **Lightning** checkpoints written by :class:`zegclip.module.ZegCLIPModule` (hyper-parameters
  ``model_config`` and ``metadata``; weights under ``model.``).
"""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path
from typing import Any

import torch

from zegclip.model.clip import ASSETS_DIR, CLIPConfig
from zegclip.model.zegclip import ZegCLIP, ZegCLIPConfig

FORMAT = "zegclip"
VERSION = 1
BUNDLED = {"shapes": ASSETS_DIR / "shapes_zegclip.pt"}
"""Names :func:`load` accepts besides file paths."""

_PRECISIONS = {
    "fp32": torch.float32, "32": torch.float32, "float32": torch.float32,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp16": torch.float16, "16": torch.float16, "float16": torch.float16,
}  # fmt: skip


# ----------------------------------------------------------------------------- official format


def parse_mmseg_config(text: str) -> dict[str, Any]:
    """Evaluate an mmseg config dump (Python assignments of literals and ``dict(...)``) safely."""
    scope: dict[str, Any] = {}

    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in scope:
                return scope[node.id]
            return {"True": True, "False": False, "None": None}.get(node.id, node.id)
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [value(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.Dict):
            return {value(k): value(v) for k, v in zip(node.keys, node.values)}
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
            return {kw.arg: value(kw.value) for kw in node.keywords}
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        if isinstance(node, ast.BinOp):
            left, right = value(node.left), value(node.right)
            ops = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
                   ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b,
                   ast.FloorDiv: lambda a, b: a // b}  # fmt: skip
            if type(node.op) in ops:
                return ops[type(node.op)](left, right)
        return None  # anything else (function calls, lambdas) is irrelevant here

    for stmt in ast.parse(text).body:
        if isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                if isinstance(target, ast.Name):
                    scope[target.id] = value(stmt.value)
    return scope


def is_official_checkpoint(obj: Any) -> bool:
    state = obj.get("state_dict") if isinstance(obj, dict) else None
    return isinstance(state, dict) and any(str(k).startswith("backbone.") for k in state) and any(
        str(k).startswith("decode_head.") for k in state
    )


def _count(state: dict[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    ids = {int(m.group(1)) for k in state if (m := pattern.match(k))}
    return max(ids) + 1 if ids else 0


_PROMPT_KEYS = ("prompt_embeddings", "deep_prompt_embeddings", "prompt_proj.", "prompt_norm.")
_LAYER_NAMES = {"multihead_attn.q.": "q.", "multihead_attn.k.": "k.", "multihead_attn.v.": "v.",
                "multihead_attn.proj.": "proj.", "linear1.": "ffn.0.", "linear2.": "ffn.3.",
                "norm2.": "norm_attn.", "norm3.": "norm_ffn."}  # fmt: skip


def map_official_key(key: str, decoder_layers: int) -> str | None:
    """Our name for an official parameter name, or None for tensors we drop."""
    if key.startswith("backbone."):
        rest = key.removeprefix("backbone.")
        return f"image_encoder.{rest}" if rest.startswith(_PROMPT_KEYS) else f"image_encoder.vit.{rest}"
    if key.startswith("text_encoder."):
        return key
    if key.startswith("decode_head.q_proj."):
        return key.replace("decode_head.", "relationship.")
    if key.startswith("decode_head.decoder_1.layers."):
        idx, rest = key.removeprefix("decode_head.decoder_1.layers.").split(".", 1)
        mapped = next((v + rest[len(k) :] for k, v in _LAYER_NAMES.items() if rest.startswith(k)), None)
        if mapped is None or (int(idx) == decoder_layers - 1 and not mapped.startswith(("q.", "k."))):
            return None  # self-attention, norm1, and the last layer's unread parts
        return f"decoder.layers.{idx}.{mapped}"
    return None


def convert_official(
    checkpoint: dict[str, Any],
) -> tuple[ZegCLIPConfig, dict[str, torch.Tensor], dict[str, Any], dict[str, torch.Tensor]]:
    """Map an official ZegCLIP checkpoint to ours.

    Returns:
        (config, state dict in our names, metadata, dropped official tensors by official name).
        Dropped: the decoder's unused self-attention and ``norm1``, the last decoder layer's
        value/output projections, FFN and norms (their output is never read) and loss buffers.
    """
    state = {k.removeprefix("module."): v for k, v in checkpoint["state_dict"].items()}
    meta = checkpoint.get("meta") or {}
    cfg = parse_mmseg_config(meta["config"]) if isinstance(meta.get("config"), str) else {}
    model_cfg = cfg.get("model") or {}
    backbone_cfg = model_cfg.get("backbone") or {}
    text_cfg = model_cfg.get("text_encoder") or {}
    head_cfg = model_cfg.get("decode_head") or {}

    if any(k.startswith("decode_head.decoder_2.") for k in state):
        raise ValueError("Official checkpoints with several decoder stages (use_stages > 1) are not supported")
    need = ["backbone.conv1.weight", "backbone.positional_embedding", "backbone.proj",
            "text_encoder.ln_final.weight", "decode_head.q_proj.weight"]  # fmt: skip
    missing = [k for k in need if k not in state]
    if missing:
        raise ValueError(f"Not a complete official ZegCLIP checkpoint: missing {missing}")

    width, _, patch, _ = state["backbone.conv1.weight"].shape
    layers = _count(state, "backbone.transformer.resblocks.")
    heads = int(backbone_cfg.get("heads") or width // 64)
    grid = math.isqrt(state["backbone.positional_embedding"].shape[0] - 1)
    image_size = int(head_cfg.get("img_size") or grid * patch)
    if image_size // patch != grid:
        image_size = grid * patch
    embed_dim = state["backbone.proj"].shape[1]
    t_width = state["text_encoder.ln_final.weight"].shape[0]
    t_heads = int(text_cfg.get("transformer_heads") or t_width // 64)
    arch = {
        "embed_dim": int(embed_dim),
        "vision_cfg": {
            "image_size": image_size,
            "patch_size": int(patch),
            "width": int(width),
            "layers": layers,
            "head_width": int(width // heads),
            "mlp_ratio": state["backbone.transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / width,
        },
        "text_cfg": {
            "context_length": int(state["text_encoder.positional_embedding"].shape[0]),
            "vocab_size": int(state["text_encoder.token_embedding.weight"].shape[0]),
            "width": int(t_width),
            "heads": t_heads,
            "layers": _count(state, "text_encoder.transformer.resblocks."),
            "mlp_ratio": state["text_encoder.transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / t_width,
        },
    }
    prompts = state.get("backbone.prompt_embeddings")
    deep = state.get("backbone.deep_prompt_embeddings")
    dec_layers = _count(state, "decode_head.decoder_1.layers.")
    config = ZegCLIPConfig(
        clip=CLIPConfig(arch=arch, weights=None, quick_gelu=True),
        image_size=image_size,
        prompt_tokens=int(prompts.shape[1]) if prompts is not None else 0,
        deep_prompt_layers=int(deep.shape[0]) if deep is not None else 0,
        decoder_layers=dec_layers,
        decoder_heads=int(head_cfg.get("num_heads") or 8),
        relationship_descriptor=state["decode_head.q_proj.weight"].shape[1] == 2 * embed_dim,
        ft_backbone=bool(model_cfg.get("ft_backbone", False)),
    )

    ours: dict[str, torch.Tensor] = {}
    dropped: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        new = map_official_key(key, dec_layers)
        if new is None:
            dropped[key] = tensor
        else:
            ours[new] = tensor

    class_names = list(model_cfg.get("class_names") or meta.get("CLASSES") or [])
    seen = list(model_cfg.get("base_class") or cfg.get("base_class") or range(len(class_names)))
    unseen = list(model_cfg.get("novel_class") or cfg.get("novel_class") or [])
    setting = "transductive" if model_cfg.get("self_training") else "inductive" if unseen else "fully"
    test_cfg = model_cfg.get("test_cfg") or {}
    crop = test_cfg.get("crop_size") or (image_size, image_size)
    stride = test_cfg.get("stride") or (image_size * 5 // 6,) * 2
    text_file = model_cfg.get("load_text_embedding")
    metadata = {
        "source": "official",
        "exp_name": meta.get("exp_name"),
        "class_names": class_names,
        "seen": [int(i) for i in seen],
        "unseen": [int(i) for i in unseen],
        "setting": setting,
        "seen_bias": 0.1 if setting == "inductive" else 0.0,
        "templates": "multi" if text_file and "multi" in str(text_file) else "single",
        "text_embedding_file": text_file,
        "test_mode": test_cfg.get("mode", "slide"),
        "crop": int(crop[0]),
        "stride": int(stride[0]),
        "iter": meta.get("iter"),
    }
    return config, ours, metadata, dropped


# ----------------------------------------------------------------------------- our format


def save(model: ZegCLIP, path: str | Path, include_clip: bool = True, metadata: dict[str, Any] | None = None) -> Path:
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


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
        raise ValueError(
            f"{source}: {len(mismatched)} tensor(s) do not fit the architecture its config describes "
            f"(prompt_tokens={config.prompt_tokens}, decoder_layers={config.decoder_layers}, "
            f"image_size={config.image_size}), e.g. {'; '.join(mismatched[:3])}"
        )
    missing, unexpected = model.load_state_dict(state, strict=False)
    frozen_missing = [k for k in missing if is_frozen_clip_key(k, config)]
    other_missing = [k for k in missing if k not in frozen_missing]
    if frozen_missing and config.clip.weights is None:
        raise ValueError(f"{source}: holds no CLIP weights and its config names none (model.clip.weights)")
    if other_missing or unexpected:
        raise ValueError(f"{source}: weights do not fit the model: missing {other_missing[:8]}, unexpected {unexpected[:8]}")
    model.metadata = dict(metadata)
    return model


def read_checkpoint(path: str | Path, weights_only: bool = True) -> tuple[ZegCLIPConfig, dict[str, torch.Tensor], dict[str, Any]]:
    """Read any supported checkpoint into (config, our state dict, metadata)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint not found: {str(path)!r}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as err:
        hint = (
            " If it is a trusted file holding pickled objects, pass weights_only=False."
            if weights_only
            else ""
        )
        raise ValueError(f"Cannot read {str(path)!r} as a torch checkpoint ({type(err).__name__}: {err}).{hint}") from err
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        return ZegCLIPConfig.from_dict(obj["config"]), obj["state_dict"], dict(obj.get("metadata") or {})
    if isinstance(obj, dict) and isinstance(obj.get("hyper_parameters"), dict) and "model_config" in obj["hyper_parameters"]:
        hp = obj["hyper_parameters"]
        state = {k.removeprefix("model."): v for k, v in obj["state_dict"].items() if k.startswith("model.")}
        metadata = dict(hp.get("metadata") or {}, global_step=obj.get("global_step"))
        return ZegCLIPConfig.from_dict(hp["model_config"]), state, metadata
    if is_official_checkpoint(obj):
        config, state, metadata, _ = convert_official(obj)
        return config, state, metadata
    keys = sorted(obj)[:10] if isinstance(obj, dict) else type(obj).__name__
    raise ValueError(
        f"{str(path)!r} is neither an official ZegCLIP checkpoint (state_dict with backbone.*/decode_head.*), "
        f"a zegclip file (format='zegclip') nor a zegclip Lightning checkpoint; top-level content: {keys}"
    )


def load(
    path: str | Path,
    device: str | torch.device | None = None,
    precision: str | torch.dtype | None = None,
    text_cache_dir: str | None = None,
    weights_only: bool = True,
) -> ZegCLIP:
    """Load a model for inference (eval mode).

    Args:
        path: an official ZegCLIP ``.pth``, a file written by :func:`save` or ``python -m
            zegclip.convert``, a zegclip Lightning ``.ckpt``, or a bundled name (``"shapes"``).
        device: e.g. ``"cuda"``; precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
    """
    source = str(path)
    if isinstance(path, str) and path in BUNDLED:
        path = BUNDLED[path]
    config, state, metadata = read_checkpoint(path, weights_only=weights_only)
    model = build_from_state(config, state, metadata, source, text_cache_dir)
    if precision is not None:
        dtype = precision if isinstance(precision, torch.dtype) else _PRECISIONS.get(str(precision))
        if dtype is None:
            raise ValueError(f"precision must be one of {sorted(_PRECISIONS)}, got {precision!r}")
        model = model.to(dtype)
    if device is not None:
        model = model.to(device)
    return model.eval()
