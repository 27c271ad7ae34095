"""Class text embeddings from CLIP's frozen text tower (docs/method.md §1.1).

Embeddings are computed once per (class names, templates, synonym rule) without autograd and
cached in memory, optionally on disk; or read from a precomputed ``.npy``/``.pt`` file (the
official ones are float16, upcast exactly and not re-normalised).

Synonyms (the open-vocabulary benchmarks' lists, e.g. A-847's ``"sofa, couch, lounge"``): a class
name holding ``", "`` names one class by several synonyms. By default the whole string is one
prompt (as ZegCLIP and SAN embed it). ``synonyms="average"`` is CAT-Seg's rule (its
``class_embeddings``): per template, the normalised embeddings of the synonyms are averaged and
renormalised, and then, as for every class, the templates are averaged and renormalised;
``synonyms="first"`` embeds the first synonym only (what CAT-Seg's CVPR release encodes).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.model import CLIP
from torch import nn

from zegclip.common.atomic import write_file
from zegclip.common.errors import ConfigError, InputError, InputNotFoundError

SINGLE_TEMPLATE: tuple[str, ...] = ("a photo of a {}",)
"""VOC's template (no final period)."""

MULTI_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a photo of a small {}.",
    "a photo of a medium {}.",
    "a photo of a large {}.",
    "This is a photo of a {}.",
    "This is a photo of a small {}.",
    "This is a photo of a medium {}.",
    "This is a photo of a large {}.",
    "a {} in the scene.",
    "a photo of a {} in the scene.",
    "There is a {} in the scene.",
    "There is the {} in the scene.",
    "This is a {} in the scene.",
    "This is the {} in the scene.",
    "This is one {} in the scene.",
)
"""The 15-template ensemble of COCO-Stuff and Context."""

TEMPLATE_SETS: dict[str, tuple[str, ...]] = {"single": SINGLE_TEMPLATE, "multi": MULTI_TEMPLATES}

SYNONYM_RULES: tuple[str, ...] = ("average", "first")
"""How a class name listing synonyms (``"a, b"``) becomes one embedding; None: the whole string."""
SYNONYM_SEPARATOR = ", "
"""What separates synonyms inside a class name (CAT-Seg's convention)."""
TEXT_BATCH = 4096
"""Prompts per text-tower batch (the 847 x 15 prompts of A-847 would not fit one)."""


def split_synonyms(name: str) -> list[str]:
    """The synonyms of a class name: ``"sofa, couch, lounge"`` -> ``["sofa", "couch", "lounge"]``."""
    parts = [part.strip() for part in name.split(SYNONYM_SEPARATOR)]
    return [part for part in parts if part] or [name]


def check_synonym_rule(synonyms: str | None) -> str | None:
    """``None``, ``"average"`` or ``"first"``; anything else raises naming the choices."""
    if synonyms is not None and synonyms not in SYNONYM_RULES:
        raise ConfigError(f"synonyms must be null or one of {list(SYNONYM_RULES)}, got {synonyms!r}")
    return synonyms


def resolve_templates(templates: str | Sequence[str]) -> tuple[str, ...]:
    """``"single"``, ``"multi"`` or an explicit list of ``{}`` templates."""
    if isinstance(templates, str):
        if templates in TEMPLATE_SETS:
            return TEMPLATE_SETS[templates]
        templates = (templates,)
    out = tuple(templates)
    if not out or any("{}" not in t for t in out):
        raise ConfigError(f"templates must be 'single', 'multi' or strings containing '{{}}', got {out!r}")
    return out


class TextEncoder(nn.Module):
    """CLIP's text tower (always frozen) with a tokenizer and an embedding cache.

    Args:
        clip: the open_clip CLIP model whose text parts are taken over.
        cache_dir: optional folder for an on-disk cache of computed class embeddings.
        cache_key: identifies the weights in the disk-cache key (e.g. the CLIP config as JSON).
    """

    def __init__(self, clip: CLIP, cache_dir: str | Path | None = None, cache_key: str = "") -> None:
        super().__init__()
        self.token_embedding = clip.token_embedding
        self.positional_embedding = clip.positional_embedding
        self.transformer = clip.transformer
        self.ln_final = clip.ln_final
        self.text_projection = clip.text_projection
        self.register_buffer("attn_mask", clip.attn_mask, persistent=False)
        self.context_length = int(clip.positional_embedding.shape[0])
        self.tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=self.context_length)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.cache_key = cache_key
        self._cache: dict[tuple[tuple[str, ...], tuple[str, ...], str | None], torch.Tensor] = {}
        self._weights_digest: str | None = None
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    @property
    def embed_dim(self) -> int:
        return int(self.text_projection.shape[1])

    def train(self, mode: bool = True) -> TextEncoder:
        return super().train(False)  # frozen: always in eval mode

    def clear_cache(self) -> None:
        """Forget in-memory embeddings (called when the weights change)."""
        self._cache.clear()
        self._weights_digest = None

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """``(T, context_length)`` CLIP BPE ids."""
        return self.tokenizer(list(texts)).to(self.positional_embedding.device)

    @torch.no_grad()
    def encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Raw (not normalised) text features ``(T, D)`` for token ids ``(T, context_length)``."""
        x = self.token_embedding(tokens) + self.positional_embedding
        x = self.transformer(x, attn_mask=self.attn_mask)
        x = self.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
        return x @ self.text_projection

    @torch.no_grad()
    def class_embeddings(
        self,
        class_names: Sequence[str],
        templates: str | Sequence[str] = SINGLE_TEMPLATE,
        synonyms: str | None = None,
    ) -> torch.Tensor:
        """L2-normalised class embeddings ``(C, D)``, float32.

        With several templates each prompt's embedding is normalised, averaged over the
        templates and normalised again. ``synonyms`` (None, ``"average"``, ``"first"``): how a
        name listing synonyms (``"a, b"``) is embedded (module docstring).
        """
        names = tuple(str(n) for n in class_names)
        if not names:
            raise ConfigError("class_names is empty: give at least one class name")
        temps = resolve_templates(templates)
        synonyms = check_synonym_rule(synonyms)
        key = (names, temps, synonyms)
        cached = self._cache.get(key)
        device = self.positional_embedding.device
        if cached is not None:
            return cached.to(device)
        disk = self._disk_path(names, temps, synonyms)
        emb = _read_cached(disk) if disk is not None else None
        if emb is None:
            emb = self._compute(names, temps, synonyms).cpu()
            if disk is not None:  # atomic, with a temporary name of this process: ranks may write it at once
                write_file(disk, lambda f: torch.save(emb, f), what="text-embedding cache")
        self._cache[key] = emb
        return emb.to(device)

    def _encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """Normalised float32 features ``(N, D)`` of ``prompts``, :data:`TEXT_BATCH` at a time."""
        feats = [
            F.normalize(self.encode_tokens(self.tokenize(prompts[i : i + TEXT_BATCH])).float(), dim=-1)
            for i in range(0, len(prompts), TEXT_BATCH)
        ]
        return feats[0] if len(feats) == 1 else torch.cat(feats)

    def _compute(self, names: tuple[str, ...], temps: tuple[str, ...], synonyms: str | None) -> torch.Tensor:
        if synonyms is None or not any(SYNONYM_SEPARATOR in n for n in names):
            texts: list[str] = list(names)
        elif synonyms == "first":
            texts = [split_synonyms(n)[0] for n in names]
        else:
            return self._average_synonyms(names, temps)
        prompts = [t.format(n) for t in temps for n in texts]
        feats = self._encode_prompts(prompts).reshape(len(temps), len(texts), -1)
        return feats[0] if len(temps) == 1 else F.normalize(feats.mean(dim=0), dim=-1)

    def _average_synonyms(self, names: tuple[str, ...], temps: tuple[str, ...]) -> torch.Tensor:
        """CAT-Seg's rule: per (template, class) the mean of the synonyms' normalised embeddings,
        renormalised (classes with one name keep theirs as is); then the template average."""
        groups = [split_synonyms(n) for n in names]
        words = [w for group in groups for w in group]
        owner = torch.repeat_interleave(torch.arange(len(names)), torch.tensor([len(g) for g in groups]))
        prompts = [t.format(w) for t in temps for w in words]
        feats = self._encode_prompts(prompts).reshape(len(temps), len(words), -1)
        per_class = torch.zeros(
            len(temps), len(names), feats.shape[-1], dtype=feats.dtype, device=feats.device
        )
        per_class.index_add_(1, owner.to(feats.device), feats)
        several = torch.tensor([len(g) > 1 for g in groups], device=feats.device)
        per_class = torch.where(several[None, :, None], F.normalize(per_class, dim=-1), per_class)
        return per_class[0] if len(temps) == 1 else F.normalize(per_class.mean(dim=0), dim=-1)

    def weights_digest(self) -> str:
        """SHA-1 of the text tower's weights: part of the disk-cache key, so that another
        checkpoint (or random init) never reads this one's embeddings."""
        digest = hashlib.sha1()
        for name, tensor in sorted(self.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    def _disk_path(
        self, names: tuple[str, ...], temps: tuple[str, ...], synonyms: str | None = None
    ) -> Path | None:
        if self.cache_dir is None:
            return None
        if self._weights_digest is None:
            self._weights_digest = self.weights_digest()
        parts = [self.cache_key, self._weights_digest, names, temps] + ([synonyms] if synonyms else [])
        key = json.dumps(parts)
        return self.cache_dir / f"text_{hashlib.sha1(key.encode()).hexdigest()[:16]}.pt"


def _read_cached(path: Path) -> torch.Tensor | None:
    """A cached embedding, or None if there is none or it cannot be read (then it is recomputed)."""
    if not path.is_file():
        return None
    try:
        emb = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 (e.g. a file cut short by an older version: recompute it)
        return None
    return emb if isinstance(emb, torch.Tensor) else None


def load_text_embeddings(path: str | Path, num_classes: int | None = None) -> torch.Tensor:
    """Read precomputed class embeddings ``(C, D)`` from ``.npy`` or ``.pt``, as float32.

    Official files are float16 and already normalised: they are upcast exactly, not re-normalised.
    """
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"Text-embedding file not found: {str(path)!r}")
    if path.suffix == ".npy":
        emb = torch.from_numpy(np.load(path))
    else:
        emb = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(emb, dict):
            raise InputError(f"{str(path)!r} holds a dict; expected a (C, D) tensor")
    if emb.ndim != 2:
        raise InputError(
            f"{str(path)!r}: expected a (C, D) array of class embeddings, got shape {tuple(emb.shape)}"
        )
    if num_classes is not None and emb.shape[0] != num_classes:
        raise InputError(f"{str(path)!r} holds {emb.shape[0]} class embeddings, expected {num_classes}")
    return emb.float()
