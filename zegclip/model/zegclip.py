"""The ZegCLIP model: frozen CLIP, deep prompts, relationship descriptor and mask decoder."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zegclip.common.errors import ConfigError
from zegclip.common.images import ImageInput, read_image, resize_short_side
from zegclip.model.chunked import CHUNK_BYTES, grid_views, iter_chunks, running_argmax
from zegclip.model.clip import CLIPConfig, create_clip
from zegclip.model.decoder import MaskDecoder, RelationshipDescriptor
from zegclip.model.inference import (
    SEEN_BIAS,
    calibrate,
    calibrate_,
    multi_scale_flip,
    resize_into,
    sliding_window,
    whole_image,
)
from zegclip.model.precision import PrecisionChoice, autocast
from zegclip.model.prediction import Prediction
from zegclip.model.preprocess import normalize
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
            raise ConfigError(f"Unknown ZegCLIP config keys {sorted(unknown)}")
        clip = data.pop("clip", {}) or {}
        clip_cfg = clip if isinstance(clip, CLIPConfig) else CLIPConfig(**dict(clip))
        return cls(clip=clip_cfg, **data)

    def __post_init__(self) -> None:
        def require(ok: bool, key: str, expected: str) -> None:
            if not ok:
                raise ConfigError(f"model.{key}={getattr(self, key)!r}: expected {expected}")

        def is_int(value: Any) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        require(
            is_int(self.image_size) and self.image_size > 0, "image_size", "a positive integer (crop size)"
        )
        require(
            is_int(self.prompt_tokens) and self.prompt_tokens >= 0,
            "prompt_tokens",
            "an integer >= 0 (0: no prompts)",
        )
        require(
            self.deep_prompt_layers is None
            or (is_int(self.deep_prompt_layers) and self.deep_prompt_layers >= 0),
            "deep_prompt_layers",
            "null (every layer after the first) or an integer >= 0",
        )
        require(is_int(self.decoder_layers) and self.decoder_layers >= 1, "decoder_layers", "an integer >= 1")
        require(is_int(self.decoder_heads) and self.decoder_heads >= 1, "decoder_heads", "an integer >= 1")
        for key in ("prompt_dropout", "decoder_dropout"):
            value = getattr(self, key)
            require(isinstance(value, (int, float)) and 0 <= value < 1, key, "a probability in [0, 1)")


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
        self.precision: PrecisionChoice | None = None
        """The precision :func:`zegclip.load` chose and why; ``segment`` and ``predict`` run under
        its autocast (``bf16-mixed``). None: built directly (the weights' dtype, no autocast)."""

    @property
    def embed_dim(self) -> int:
        return self.image_encoder.output_dim

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def class_embeddings(
        self,
        class_names: Sequence[str],
        templates: str | Sequence[str] = SINGLE_TEMPLATE,
        synonyms: str | None = None,
    ) -> torch.Tensor:
        """L2-normalised text embeddings ``(C, D)`` (computed once, then cached); ``synonyms``:
        how names listing synonyms are embedded (:mod:`zegclip.model.text`)."""
        return self.text_encoder.class_embeddings(class_names, templates, synonyms)

    def forward(self, images: torch.Tensor, text_embeddings: torch.Tensor) -> ZegCLIPOutput:
        """Mask logits for each class.

        Args:
            images: ``(B, 3, H, W)`` normalised pixels (training crops are ``image_size`` square).
            text_embeddings: ``(C, D)`` normalised class embeddings.
        """
        if text_embeddings.ndim != 2 or text_embeddings.shape[1] != self.embed_dim:
            raise ValueError(
                f"text_embeddings must be (C, {self.embed_dim}), got {tuple(text_embeddings.shape)}"
            )
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
        seen_bias: float = SEEN_BIAS,
    ) -> torch.Tensor:
        """Calibrated scores of one forward pass, resized to the input size ``(B, C, H, W)``."""
        return self.scores_from_logits(
            self(images, text_embeddings).logits, images.shape[-2:], seen, seen_bias
        )

    def scores_from_logits(
        self,
        logits: torch.Tensor,
        size: tuple[int, int] | torch.Size,
        seen: Sequence[int] | torch.Tensor | None = None,
        seen_bias: float = SEEN_BIAS,
        buffer: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Grid logits ``(B, C, h, w)`` -> calibrated scores at ``size``: upsampled to the crop size
        (``pred_masks``), calibrated, resized to ``size`` (the window's or image's). ``buffer``
        ``(B, C, S, S)``: the upsampled and calibrated maps are written into it (same numbers)."""
        if self.precision is not None and self.precision.autocast_dtype is not None:
            logits = logits.float()  # bf16-mixed: the scores in fp32
        if buffer is None:
            masks = F.interpolate(
                logits, size=(self.config.image_size,) * 2, mode="bilinear", align_corners=False
            )
            out = calibrate(masks, seen, seen_bias)
        else:
            out = calibrate_(resize_into(logits, buffer), seen, seen_bias)
        if not torch.compiler.is_compiling() and out.shape[-2:] == tuple(size):
            return out  # the identity; not while exporting, where the comparison would fix H and W
        return F.interpolate(out, size=size, mode="bilinear", align_corners=False)

    @torch.no_grad()
    def segment(
        self,
        pixel_values: torch.Tensor,
        class_names: Sequence[str] | None = None,
        seen: Sequence[int] | None = None,
        seen_bias: float = SEEN_BIAS,
        mode: str = "slide",
        crop: int | None = None,
        stride: int | None = None,
        templates: str | Sequence[str] = SINGLE_TEMPLATE,
        text_embeddings: torch.Tensor | None = None,
        window_batch: int = 8,
        scales: Sequence[float] | None = None,
        flip: bool = False,
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
            scales, flip: test-time augmentation (mmseg's ``aug_test``): average the calibrated
                scores of the image resized by each scale (e.g. ``[0.5, 0.75, 1.0, 1.25, 1.5]``)
                and, with ``flip``, of its mirror image; None / False: one pass (the paper's protocol).

        Returns:
            ``(B, C, H, W)`` calibrated scores; ``argmax(1)`` is the segmentation.
        """
        _check_pixel_values(pixel_values, self.image_encoder.patch_size)
        if text_embeddings is None:
            text_embeddings = self.class_embeddings(self._vocabulary(class_names), templates)
        device = next(self.parameters()).device
        dtype = next(self.image_encoder.parameters()).dtype
        pixel_values = pixel_values.to(device=device, dtype=dtype)
        text_embeddings = text_embeddings.to(device=device, dtype=dtype)
        seen_idx = _check_indices(seen, text_embeddings.shape[0])
        score = self._score_function(text_embeddings, seen_idx, seen_bias, mode, crop, stride, window_batch)
        with autocast(self.precision, device.type):  # bf16-mixed: bf16 matrix products over fp32 weights
            if scales is None and not flip:
                return score(pixel_values)
            return multi_scale_flip(score, pixel_values, scales if scales is not None else (1.0,), flip)

    @torch.no_grad()
    def segment_labels(
        self,
        pixel_values: torch.Tensor,
        class_names: Sequence[str] | None = None,
        seen: Sequence[int] | None = None,
        seen_bias: float = SEEN_BIAS,
        mode: str = "slide",
        crop: int | None = None,
        stride: int | None = None,
        templates: str | Sequence[str] = SINGLE_TEMPLATE,
        text_embeddings: torch.Tensor | None = None,
        window_batch: int = 8,
        scales: Sequence[float] | None = None,
        flip: bool = False,
        out_size: tuple[int, int] | None = None,
        resize_dtype: torch.dtype | None = None,
        max_bytes: int = CHUNK_BYTES,
    ) -> torch.Tensor:
        """The segmentation ``(B, H, W)`` (class indices) without full-size scores of all classes.

        Equals ``segment(...).argmax(1)``, or with ``out_size`` the argmax of ``segment(...)``
        resized bilinearly to ``out_size`` (after a cast to ``resize_dtype`` when given), ties to
        the lower index; but memory no longer grows with the vocabulary at full resolution: each
        window is scored once at the decoder grid, then the scores are assembled ``max_bytes``
        worth of classes at a time, keeping the running maximum (:mod:`zegclip.model.chunked`).
        Arguments as :meth:`segment`.
        """
        return running_argmax(
            self.segment_chunks(
                pixel_values,
                class_names,
                seen,
                seen_bias,
                mode,
                crop,
                stride,
                templates,
                text_embeddings,
                window_batch,
                scales,
                flip,
                out_size,
                resize_dtype,
                max_bytes,
                _reuse=True,
            )
        )

    @torch.no_grad()
    def segment_chunks(
        self,
        pixel_values: torch.Tensor,
        class_names: Sequence[str] | None = None,
        seen: Sequence[int] | None = None,
        seen_bias: float = SEEN_BIAS,
        mode: str = "slide",
        crop: int | None = None,
        stride: int | None = None,
        templates: str | Sequence[str] = SINGLE_TEMPLATE,
        text_embeddings: torch.Tensor | None = None,
        window_batch: int = 8,
        scales: Sequence[float] | None = None,
        flip: bool = False,
        out_size: tuple[int, int] | None = None,
        resize_dtype: torch.dtype | None = None,
        max_bytes: int = CHUNK_BYTES,
        _reuse: bool = False,
    ) -> Iterator[tuple[int, int, torch.Tensor]]:
        """:meth:`segment`'s scores a chunk of classes at a time: ``(start, stop, (B, stop - start, H, W))``
        (resized to ``out_size`` when given), each window run through the network only once.
        Arguments as :meth:`segment_labels`."""
        _check_pixel_values(pixel_values, self.image_encoder.patch_size)
        if text_embeddings is None:
            text_embeddings = self.class_embeddings(self._vocabulary(class_names), templates)
        device = next(self.parameters()).device
        dtype = next(self.image_encoder.parameters()).dtype
        pixel_values = pixel_values.to(device=device, dtype=dtype)
        text = text_embeddings.to(device=device, dtype=dtype)
        seen_idx = _check_indices(seen, text.shape[0])
        crop = crop or self.config.image_size
        mixed = self.precision is not None and self.precision.autocast_dtype is not None

        def grid_logits(images: torch.Tensor) -> torch.Tensor:
            logits = self(images, text).logits
            return logits.float() if mixed else logits  # bf16-mixed: scores in fp32, as in segment()

        with autocast(self.precision, device.type):  # the windows' forward passes run here, at once
            views = grid_views(
                grid_logits,
                pixel_values,
                mode=mode,
                crop=crop,
                stride=stride or (crop * 5) // 6,
                window_batch=window_batch,
                scales=scales,
                flip=flip,
            )

        def to_scores(
            logits: torch.Tensor,
            local_seen: list[int] | None,
            size: tuple[int, int],
            buffer: torch.Tensor | None,
        ) -> torch.Tensor:
            return self.scores_from_logits(logits, size, local_seen, seen_bias, buffer)

        chunks = iter_chunks(
            views,
            to_scores,
            text.shape[0],
            seen_idx,
            tuple(pixel_values.shape[-2:]),
            out_size=out_size,
            tta=scales is not None or flip,
            resize_dtype=resize_dtype,
            mask_size=(self.config.image_size,) * 2,
            max_bytes=max_bytes,
            reuse=_reuse,
        )
        return _under_autocast(chunks, self.precision, device.type)

    def _vocabulary(self, class_names: Sequence[str] | None) -> list[str]:
        """The class names to segment: those given, else the checkpoint's own."""
        names = class_names if class_names is not None else self.metadata.get("class_names")
        if names is None or len(names) == 0:
            raise ValueError("class_names is empty: give the names of the classes to segment")
        return list(names)

    def _score_function(
        self,
        text: torch.Tensor,
        seen: list[int] | None,
        seen_bias: float,
        mode: str,
        crop: int | None,
        stride: int | None,
        window_batch: int,
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """Images ``(B, 3, H, W)`` -> calibrated scores ``(B, C, H, W)``, whole-image or sliding-window."""

        def encode(batch: torch.Tensor) -> torch.Tensor:
            return self.scores(batch, text, seen, seen_bias)

        if mode == "whole":
            return partial(whole_image, encode)
        if mode == "slide":
            crop = crop or self.config.image_size
            # windows larger than the image shrink to it, unpadded (mmseg 0.24 / official ZegCLIP)
            return partial(
                sliding_window,
                encode,
                num_classes=text.shape[0],
                crop=crop,
                stride=stride or (crop * 5) // 6,
                window_batch=window_batch,
            )
        raise ConfigError(f"mode must be 'slide' or 'whole', got {mode!r}")

    @torch.no_grad()
    def predict(
        self,
        image: ImageInput,
        class_names: Sequence[str] | None = None,
        seen: Sequence[int] | None = None,
        seen_bias: float = SEEN_BIAS,
        mode: str = "slide",
        crop: int | None = None,
        stride: int | None = None,
        templates: str | Sequence[str] | None = None,
        return_scores: bool = False,
        window_batch: int = 8,
    ) -> Prediction:
        """Segment one image given as a file, a PIL image or an ``(H, W, 3)`` uint8 RGB array.

        Done as evaluation does it: keep-ratio resize so that the short side is the crop size,
        normalisation, :meth:`segment` (sliding window by default), scores resized bilinearly
        back to the image's size, argmax.

        Args:
            image: a path, a PIL image or an array (see :func:`zegclip.common.images.read_image`
                for the modes handled: EXIF rotation, grey, RGBA, 16-bit, ...).
            class_names: the vocabulary (default: the checkpoint's).
            seen, seen_bias: class indices that get ``-seen_bias`` (None: no offset).
            mode, crop, stride, window_batch: as in :meth:`segment`; ``crop`` and ``stride``
                default to the checkpoint's test settings (else ``image_size`` and 5/6 of it).
            templates: prompt templates (default: the checkpoint's, else ``"single"``).
            return_scores: keep the calibrated scores ``(C, H, W)`` at the image's size.

        Returns:
            A :class:`~zegclip.model.prediction.Prediction` (``label``, ``shares()``,
            ``overlay()``, ``save()``, ``to_dict()``).
        """
        source = str(image) if isinstance(image, (str, Path)) else None
        rgb = read_image(image)
        class_names = self._vocabulary(class_names)
        if crop is None:
            crop = int(self.metadata.get("crop") or self.config.image_size)
            stride = stride or self.metadata.get("stride")
        if templates is None:
            templates = self.metadata.get("templates") or SINGLE_TEMPLATE
        pixels = normalize(resize_short_side(rgb, crop))[None]
        args = {
            "seen": seen,
            "seen_bias": seen_bias,
            "mode": mode,
            "crop": crop,
            "stride": stride,
            "templates": templates,
            "window_batch": window_batch,
        }
        size = rgb.shape[:2]
        full = None
        if return_scores:
            scores = self.segment(pixels, list(class_names), **args)[0].float()
            full = F.interpolate(scores[None], size=size, mode="bilinear", align_corners=False)[0]
            label = full.argmax(0)
            full = full.cpu()
        else:
            label = self.segment_labels(
                pixels, list(class_names), out_size=size, resize_dtype=torch.float32, **args
            )[0]
        return Prediction(
            image=rgb,
            label=label.cpu().numpy().astype(np.int64),
            class_names=[str(n) for n in class_names],
            scores=full,
            source=source,
        )

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
        raise ConfigError(
            f"seen indices {bad} are out of range for {num_classes} classes (valid: 0..{num_classes - 1})"
        )
    return out


def _check_pixel_values(pixel_values: Any, patch_size: int) -> None:
    """Reject what ``segment`` would otherwise turn into silent nonsense or a cryptic error."""
    if not torch.is_tensor(pixel_values) or pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
        shape = tuple(pixel_values.shape) if torch.is_tensor(pixel_values) else type(pixel_values).__name__
        raise ValueError(f"pixel_values must be a (B, 3, H, W) tensor of normalised RGB, got {shape}")
    if not pixel_values.is_floating_point():
        raise ValueError(
            f"pixel_values has dtype {pixel_values.dtype}: segment() takes float pixels normalised with the "
            "ImageNet mean/std of 0-255 RGB (zegclip.data.IMAGENET_MEAN / IMAGENET_STD), not raw image values"
        )
    if pixel_values.shape[0] == 0:
        raise ValueError("pixel_values is an empty batch (B = 0): give at least one image")
    height, width = pixel_values.shape[-2:]
    if height < patch_size or width < patch_size:
        raise ValueError(
            f"images of {height}x{width} pixels are smaller than one {patch_size}x{patch_size} patch: "
            "resize them first (evaluation resizes the short side to the crop size)"
        )
    bad = int((~torch.isfinite(pixel_values)).sum())
    if bad:
        raise ValueError(f"pixel_values holds {bad} NaN/inf value(s): every output score would be NaN")


def _under_autocast(
    chunks: Iterator[tuple[int, int, torch.Tensor]], precision: PrecisionChoice | None, device_type: str
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """``chunks`` computed under the model's autocast (bf16-mixed), as :meth:`ZegCLIP.segment` is."""
    with autocast(precision, device_type):
        yield from chunks
