"""Official ZegCLIP (mmsegmentation) checkpoints: read their config text, infer the architecture,
map their parameter names onto ours.

Official releases are ``{"meta": {..., "config": <mmseg config as Python text>}, "state_dict":
{"backbone.*", "text_encoder.*", "decode_head.*"}}``. The architecture is inferred from tensor
shapes (head counts from the config text, default ``width // 64``). Tensors that never affect the
output (the decoder's self-attention and ``norm1``, the last decoder layer's value/output
projections, FFN and norms, loss buffers) are dropped and returned, so that ``python -m
zegclip.export`` can list them (docs/method.md §1.5).
"""

from __future__ import annotations

import ast
import math
import re
from typing import Any

import torch

from zegclip.model.clip import CLIPConfig
from zegclip.model.inference import default_seen_bias
from zegclip.model.zegclip import ZegCLIPConfig


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
            ops = {
                ast.Add: lambda a, b: a + b,
                ast.Sub: lambda a, b: a - b,
                ast.Mult: lambda a, b: a * b,
                ast.Div: lambda a, b: a / b,
                ast.FloorDiv: lambda a, b: a // b,
            }
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
    return (
        isinstance(state, dict)
        and any(str(k).startswith("backbone.") for k in state)
        and any(str(k).startswith("decode_head.") for k in state)
    )


def _count(state: dict[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    ids = {int(m.group(1)) for k in state if (m := pattern.match(k))}
    return max(ids) + 1 if ids else 0


_PROMPT_KEYS = ("prompt_embeddings", "deep_prompt_embeddings", "prompt_proj.", "prompt_norm.")
_LAYER_NAMES = {
    "multihead_attn.q.": "q.",
    "multihead_attn.k.": "k.",
    "multihead_attn.v.": "v.",
    "multihead_attn.proj.": "proj.",
    "linear1.": "ffn.0.",
    "linear2.": "ffn.3.",
    "norm2.": "norm_attn.",
    "norm3.": "norm_ffn.",
}


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
    _check_complete(state)
    config = _architecture(state, model_cfg)
    ours: dict[str, torch.Tensor] = {}
    dropped: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        new = map_official_key(key, config.decoder_layers)
        if new is None:
            dropped[key] = tensor
        else:
            ours[new] = tensor
    return config, ours, _metadata(cfg, meta, config.image_size), dropped


def _check_complete(state: dict[str, torch.Tensor]) -> None:
    if any(k.startswith("decode_head.decoder_2.") for k in state):
        raise ValueError(
            "Official checkpoints with several decoder stages (use_stages > 1) are not supported"
        )
    need = [
        "backbone.conv1.weight",
        "backbone.positional_embedding",
        "backbone.proj",
        "text_encoder.ln_final.weight",
        "decode_head.q_proj.weight",
    ]
    missing = [k for k in need if k not in state]
    if missing:
        raise ValueError(f"Not a complete official ZegCLIP checkpoint: missing {missing}")


def _architecture(state: dict[str, torch.Tensor], model_cfg: dict[str, Any]) -> ZegCLIPConfig:
    """The architecture from the tensor shapes (head counts from the config text, or width // 64)."""
    head_cfg = model_cfg.get("decode_head") or {}
    width, _, patch, _ = state["backbone.conv1.weight"].shape
    heads = int((model_cfg.get("backbone") or {}).get("heads") or width // 64)
    grid = math.isqrt(state["backbone.positional_embedding"].shape[0] - 1)
    image_size = int(head_cfg.get("img_size") or grid * patch)
    if image_size // patch != grid:
        image_size = grid * patch
    embed_dim = state["backbone.proj"].shape[1]
    t_width = state["text_encoder.ln_final.weight"].shape[0]
    t_heads = int((model_cfg.get("text_encoder") or {}).get("transformer_heads") or t_width // 64)
    arch = {
        "embed_dim": int(embed_dim),
        "vision_cfg": {
            "image_size": image_size,
            "patch_size": int(patch),
            "width": int(width),
            "layers": _count(state, "backbone.transformer.resblocks."),
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
    return ZegCLIPConfig(
        clip=CLIPConfig(arch=arch, weights=None, quick_gelu=True),
        image_size=image_size,
        prompt_tokens=int(prompts.shape[1]) if prompts is not None else 0,
        deep_prompt_layers=int(deep.shape[0]) if deep is not None else 0,
        decoder_layers=_count(state, "decode_head.decoder_1.layers."),
        decoder_heads=int(head_cfg.get("num_heads") or 8),
        relationship_descriptor=state["decode_head.q_proj.weight"].shape[1] == 2 * embed_dim,
        ft_backbone=bool(model_cfg.get("ft_backbone", False)),
    )


def _metadata(cfg: dict[str, Any], meta: dict[str, Any], image_size: int) -> dict[str, Any]:
    """Vocabulary, split, setting and test defaults recorded in the official config."""
    model_cfg = cfg.get("model") or {}
    class_names = list(model_cfg.get("class_names") or meta.get("CLASSES") or [])
    seen = list(model_cfg.get("base_class") or cfg.get("base_class") or range(len(class_names)))
    unseen = list(model_cfg.get("novel_class") or cfg.get("novel_class") or [])
    setting = "transductive" if model_cfg.get("self_training") else "inductive" if unseen else "fully"
    test_cfg = model_cfg.get("test_cfg") or {}
    crop = test_cfg.get("crop_size") or (image_size, image_size)
    stride = test_cfg.get("stride") or (image_size * 5 // 6,) * 2
    text_file = model_cfg.get("load_text_embedding")
    return {
        "source": "official",
        "exp_name": meta.get("exp_name"),
        "class_names": class_names,
        "seen": [int(i) for i in seen],
        "unseen": [int(i) for i in unseen],
        "setting": setting,
        "seen_bias": default_seen_bias(setting),
        "templates": "multi" if text_file and "multi" in str(text_file) else "single",
        "text_embedding_file": text_file,
        "test_mode": test_cfg.get("mode", "slide"),
        "crop": int(crop[0]),
        "stride": int(stride[0]),
        "iter": meta.get("iter"),
    }
