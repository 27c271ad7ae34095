"""The ZegCLIP model: frozen CLIP, deep prompts, relationship descriptor and mask decoder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zegclip.model.clip import CLIPConfig, create_clip
from zegclip.model.decoder import MaskDecoder, RelationshipDescriptor
from zegclip.model.inference import calibrate, sliding_window, whole_image
from zegclip.model.prompted_vit import PromptedVisionTransformer
from zegclip.model.text import SINGLE_TEMPLATE, TextEncoder


@dataclass
class ZegCLIPConfig:
    """Architecture of a ZegCLIP model; stored with every checkpoint we write.

    Attributes:
        clip: CLIP towers and their weights.
        image_size: training crop size (square); fixes the positional-embedding grid and the
            size the mask logits are upsampled to.
        prompt_tokens: VPT tokens per layer (10 VOC, 100 COCO-Stuff, 35 Context; 0 = none).
        deep_prompt_layers: layers after the first that get fresh prompts (None: all).
        prompt_dropout: dropout on the projected prompts.
        decoder_layers, decoder_heads, decoder_dropout: the mask decoder.
        relationship_descriptor: build queries from ``[t * g, t]`` (False: from ``t`` alone).
        ft_backbone: train the CLIP image tower too (ablation).
        grad_checkpointing: recompute the image tower's block activations in the backward pass
            (activation checkpointing: less memory, more time; results unchanged).
    """

    clip: CLIPConfig = field(default_factory=CLIPConfig)
    image_size: int = 512
    prompt_tokens: int = 10
    deep_prompt_layers: int | None = None
    prompt_dropout: float = 0.1
    decoder_layers: int = 3
    decoder_heads: int = 8
    decoder_dropout: float = 0.1
    relationship_descriptor: bool = True
    ft_backbone: bool = False
    grad_checkpointing: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["clip"] = self.clip.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ZegCLIPConfig:
        data = dict(data)
        unknown = set(data) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise ValueError(f"Unknown ZegCLIP config keys {sorted(unknown)}")
        clip = data.pop("clip", {}) or {}
        clip_cfg = clip if isinstance(clip, CLIPConfig) else CLIPConfig(**dict(clip))
        return cls(clip=clip_cfg, **data)


@dataclass
class ZegCLIPOutput:
    """What one forward pass yields.

    Attributes:
        layer_logits: every decoder layer's mask logits at the patch grid ``(B, C, h, w)``.
        layer_queries: queries after each decoder layer but the last ``(B, C, D)``.
        queries: the relationship descriptor's queries ``(B, C, D)``.
        global_embedding ``(B, D)`` and visual_embedding ``(B, D, h, w)``: the image tower's outputs.
        mask_size: ``(S, S)``, the configured ``image_size`` that ``pred_masks`` has.
    """

    layer_logits: list[torch.Tensor]
    layer_queries: list[torch.Tensor]
    queries: torch.Tensor
    global_embedding: torch.Tensor
    visual_embedding: torch.Tensor
    mask_size: tuple[int, int]

    @property
    def logits(self) -> torch.Tensor:
        """The last layer's mask logits at the patch grid ``(B, C, h, w)`` (what the loss takes)."""
        return self.layer_logits[-1]

    @cached_property
    def pred_masks(self) -> torch.Tensor:
        """The last layer's mask logits upsampled to ``mask_size`` ``(B, C, S, S)``, computed on
        first access (training never needs them at full size)."""
        return F.interpolate(self.logits, size=self.mask_size, mode="bilinear", align_corners=False)

    def logits_for(self, label_size: tuple[int, int] | torch.Size) -> torch.Tensor:
        """What the loss should get for labels of ``label_size``: the grid logits when the
        labels have ``mask_size`` (the loss upsamples them chunk by chunk: the numbers of
        ``pred_masks`` to float32 rounding), else ``pred_masks`` (which the loss resizes once
        more, as officially)."""
        return self.logits if tuple(label_size) == tuple(self.mask_size) else self.pred_masks


class ZegCLIP(nn.Module):
    """ZegCLIP (CVPR 2023) on open_clip.

    Only the prompts and the decoder train; both CLIP towers are frozen and kept in eval mode
    (unless ``ft_backbone`` unfreezes the image tower).
    """

    def __init__(self, config: ZegCLIPConfig, text_cache_dir: str | None = None) -> None:
        super().__init__()
        self.config = config
        clip_cfg = CLIPConfig(**{**config.clip.to_dict(), "image_size": config.image_size})
        clip = create_clip(clip_cfg)
        self.image_encoder = PromptedVisionTransformer(
            clip.visual,
            prompt_tokens=config.prompt_tokens,
            deep_layers=config.deep_prompt_layers,
            prompt_dropout=config.prompt_dropout,
            ft_backbone=config.ft_backbone,
            grad_checkpointing=config.grad_checkpointing,
        )
        self.text_encoder = TextEncoder(clip, cache_dir=text_cache_dir, cache_key=repr(clip_cfg.to_dict()))
        dim = self.image_encoder.output_dim
        if self.text_encoder.embed_dim != dim:
            raise ValueError(f"text embed dim {self.text_encoder.embed_dim} != image embed dim {dim}")
        self.relationship = RelationshipDescriptor(dim, enabled=config.relationship_descriptor)
        self.decoder = MaskDecoder(dim, config.decoder_layers, config.decoder_heads, config.decoder_dropout)
        self.metadata: dict[str, Any] = {}
        """Vocabulary and test defaults read from a checkpoint (class_names, seen, templates, ...)."""

    @property
    def embed_dim(self) -> int:
        return self.image_encoder.output_dim

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def class_embeddings(
        self, class_names: Sequence[str], templates: str | Sequence[str] = SINGLE_TEMPLATE
    ) -> torch.Tensor:
        """L2-normalised text embeddings ``(C, D)`` (computed once, then cached)."""
        return self.text_encoder.class_embeddings(class_names, templates)

    def forward(self, images: torch.Tensor, text_embeddings: torch.Tensor) -> ZegCLIPOutput:
        """Mask logits for each class.

        Args:
            images: ``(B, 3, H, W)`` normalised pixels (training crops are ``image_size`` square).
            text_embeddings: ``(C, D)`` normalised class embeddings.
        """
        if text_embeddings.ndim != 2 or text_embeddings.shape[1] != self.embed_dim:
            raise ValueError(f"text_embeddings must be (C, {self.embed_dim}), got {tuple(text_embeddings.shape)}")
        if text_embeddings.shape[0] == 0:
            raise ValueError("text_embeddings is empty: give at least one class")
        global_embedding, visual_embedding = self.image_encoder(images)
        b, d, h, w = visual_embedding.shape
        queries = self.relationship(text_embeddings, global_embedding)
        memory = visual_embedding.flatten(2).transpose(1, 2)
        layer_queries, layer_logits = self.decoder(queries, memory)
        grid_logits = [logits.reshape(b, -1, h, w) for logits in layer_logits]
        return ZegCLIPOutput(
            layer_logits=grid_logits,
            layer_queries=layer_queries,
            queries=queries,
            global_embedding=global_embedding,
            visual_embedding=visual_embedding,
            mask_size=(self.config.image_size, self.config.image_size),
        )

    def scores(
        self,
        images: torch.Tensor,
        text_embeddings: torch.Tensor,
        seen: Sequence[int] | torch.Tensor | None = None,
        seen_bias: float = 0.1,
    ) -> torch.Tensor:
        """Calibrated scores of one forward pass, resized to the input size ``(B, C, H, W)``."""
        logits = self(images, text_embeddings).pred_masks
        out = calibrate(logits, seen, seen_bias)
        if out.shape[-2:] == images.shape[-2:]:
            return out  # resizing to the same size is the identity
        return F.interpolate(out, size=images.shape[-2:], mode="bilinear", align_corners=False)

    @torch.no_grad()
    def segment(
        self,
        pixel_values: torch.Tensor,
        class_names: Sequence[str] | None = None,
        seen: Sequence[int] | None = None,
        seen_bias: float = 0.1,
        mode: str = "slide",
        crop: int | None = None,
        stride: int | None = None,
        templates: str | Sequence[str] = SINGLE_TEMPLATE,
        text_embeddings: torch.Tensor | None = None,
        window_batch: int = 8,
    ) -> torch.Tensor:
        """Segment images with any class names.

        Args:
            pixel_values: ``(B, 3, H, W)`` float, normalised (ImageNet mean/std on 0-255 RGB).
            class_names: the vocabulary (defaults to the checkpoint's, if it has one).
            seen: class indices that get ``-seen_bias`` (calibration toward unseen classes);
                None: no offset.
            mode: ``"slide"`` (windows of ``crop`` every ``stride`` pixels, averaged) or ``"whole"``.
            crop, stride: window size and step (default ``image_size`` and ``5/6`` of it:
                512 and 426 for the paper's models).
            templates: ``"single"``, ``"multi"`` or a list of ``{}`` templates.
            text_embeddings: precomputed ``(C, D)`` embeddings instead of names.
            window_batch: windows encoded per forward pass in slide mode.

        Returns:
            ``(B, C, H, W)`` calibrated scores; ``argmax(1)`` is the segmentation.
        """
        if not torch.is_tensor(pixel_values) or pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
            shape = tuple(pixel_values.shape) if torch.is_tensor(pixel_values) else type(pixel_values)
            raise ValueError(f"pixel_values must be a (B, 3, H, W) tensor of normalised RGB, got {shape}")
        if text_embeddings is None:
            if class_names is None:
                class_names = self.metadata.get("class_names")
            if class_names is None or len(class_names) == 0:
                raise ValueError("class_names is empty: give the names of the classes to segment")
            text_embeddings = self.class_embeddings(class_names, templates)
        num_classes = text_embeddings.shape[0]
        seen_idx = _check_indices(seen, num_classes)
        device = next(self.parameters()).device
        dtype = next(self.image_encoder.parameters()).dtype
        pixel_values = pixel_values.to(device=device, dtype=dtype)
        text_embeddings = text_embeddings.to(device=device, dtype=dtype)

        def encode(batch: torch.Tensor) -> torch.Tensor:
            return self.scores(batch, text_embeddings, seen_idx, seen_bias)

        if mode == "whole":
            return whole_image(encode, pixel_values)
        if mode == "slide":
            crop = crop or self.config.image_size
            stride = stride or (crop * 5) // 6
            return sliding_window(encode, pixel_values, num_classes, crop, stride, window_batch)
        raise ValueError(f"mode must be 'slide' or 'whole', got {mode!r}")

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False):  # type: ignore[override]
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.text_encoder.clear_cache()
        return result


def _check_indices(indices: Sequence[int] | torch.Tensor | None, num_classes: int) -> list[int] | None:
    if indices is None:
        return None
    out = [int(i) for i in indices]
    bad = [i for i in out if not 0 <= i < num_classes]
    if bad:
        raise ValueError(f"seen indices {bad} are out of range for {num_classes} classes (valid: 0..{num_classes - 1})")
    return out
