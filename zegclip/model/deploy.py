"""ONNX export of the whole-image forward for a fixed vocabulary.

The graph maps normalised pixels ``pixel_values`` ``(B, 3, H, W)`` float32 (ImageNet mean/std on
0-255 RGB) to calibrated scores ``scores`` ``(B, C, H, W)`` (sigmoid of the mask logits minus the
seen-class offset, resized to the input size): :meth:`ZegCLIP.scores` with the class text
embeddings baked in as constants. Batch, height and width are dynamic (height and width at least
one patch). The vocabulary, the offset and the preprocessing constants are stored in the file's
metadata (``metadata_props``).

Evaluation's protocol around it (done by the caller): keep-ratio resize to short side = ``crop``,
windows of ``crop`` x ``crop`` every ``stride`` pixels, average, resize to the original size.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from zegclip.common.constants import IMAGENET_MEAN, IMAGENET_STD
from zegclip.model.text import SINGLE_TEMPLATE
from zegclip.model.zegclip import ZegCLIP

_SINGLE_FILE_LIMIT = 1_800_000_000  # protobuf caps one file at 2 GiB; larger weights go beside it


class FixedVocabularyScores(nn.Module):
    """``pixel_values (B, 3, H, W) -> scores (B, C, H, W)`` for one vocabulary."""

    def __init__(
        self, model: ZegCLIP, text_embeddings: torch.Tensor, seen: Sequence[int] | None, seen_bias: float
    ) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("text_embeddings", text_embeddings.detach().clone())
        self.seen = list(seen) if seen else None
        self.seen_bias = float(seen_bias)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.scores(pixel_values, self.text_embeddings, self.seen, self.seen_bias)


def export_onnx(
    model: ZegCLIP,
    path: str | Path,
    class_names: Sequence[str],
    seen: Sequence[int] | None = None,
    seen_bias: float = 0.0,
    templates: str | Sequence[str] = SINGLE_TEMPLATE,
    opset: int = 18,
) -> Path:
    """Write ``model``'s whole-image scores for ``class_names`` as an ONNX file (float32, CPU).

    Returns the path. Files whose weights exceed ~1.8 GB keep them in ``<path>.data`` beside it.
    """
    import onnx

    if not class_names:
        raise ValueError("class_names is empty: the ONNX graph needs a fixed vocabulary")
    model = model.float().cpu().eval()
    embeddings = model.class_embeddings(list(class_names), templates).float()
    graph = FixedVocabularyScores(model, embeddings, seen, seen_bias).eval()
    patch = model.image_encoder.patch_size
    size = model.config.image_size
    example = torch.randn(2, 3, size, size + patch)  # batch 2 and a non-square size: none gets specialised
    dims = {0: torch.export.Dim("batch", min=1, max=1024)}
    dims[2] = torch.export.Dim("height", min=patch, max=16384)
    dims[3] = torch.export.Dim("width", min=patch, max=16384)
    weights_bytes = sum(p.numel() * p.element_size() for p in graph.parameters())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        program = torch.onnx.export(
            graph,
            (example,),
            dynamo=True,
            input_names=["pixel_values"],
            output_names=["scores"],
            dynamic_shapes={"pixel_values": dims},
            opset_version=opset,
            verbose=False,
        )
    meta = {
        "class_names": json.dumps(list(class_names)),
        "seen": json.dumps(list(seen or [])),
        "seen_bias": str(float(seen_bias)),
        "templates": json.dumps(templates if isinstance(templates, str) else list(templates)),
        "image_size": str(size),
        "crop": str(int(model.metadata.get("crop") or size)),
        "stride": str(int(model.metadata.get("stride") or size * 5 // 6)),
        "mean": json.dumps(list(IMAGENET_MEAN)),
        "std": json.dumps(list(IMAGENET_STD)),
        "precision": "fp32",
        "input": "pixel_values (B, 3, H, W) float32: RGB 0-255, minus mean, divided by std",
        "output": "scores (B, C, H, W) float32: calibrated class scores; argmax over C is the segmentation",
    }
    proto = program.model_proto
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    external = weights_bytes > _SINGLE_FILE_LIMIT
    onnx.save_model(
        proto, str(path), save_as_external_data=external, location=path.name + ".data" if external else None
    )
    return path
