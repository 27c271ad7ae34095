"""Our checkpoint format: round trips with and without the frozen CLIP, Lightning layout, precision."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tiny_model import TINY_ARCH

import zegclip
from zegclip import CLIPConfig, ZegCLIP
from zegclip.model.checkpoint import save
from zegclip.model.clip import create_clip, save_compact_clip

NAMES = ["cat", "dog", "grass"]


def make_model(config, seed: int = 0) -> ZegCLIP:
    """A model whose trainable weights are all moved away from their initial values."""
    torch.manual_seed(seed)
    model = ZegCLIP(config)
    with torch.no_grad():
        for p in model.trainable_parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def outputs(model: ZegCLIP, seed: int = 1) -> torch.Tensor:
    images = torch.randn(2, 3, 64, 90, generator=torch.Generator().manual_seed(seed))
    return model.segment(images.to(next(model.parameters()).dtype), NAMES, seen=[0], crop=64, stride=43)


def assert_same_weights(a: ZegCLIP, b: ZegCLIP) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def clip_file(tmp_path, kind: str) -> str:
    torch.manual_seed(7)
    clip = create_clip(CLIPConfig(arch=TINY_ARCH))
    path = tmp_path / f"clip_{kind}.pt"
    if kind == "compact":
        ids = clip_tokenizer_ids([f"a photo of a {n}" for n in NAMES])
        save_compact_clip(clip, TINY_ARCH, path, ids)
    else:
        torch.save(clip.state_dict(), path)
    return str(path)


def clip_tokenizer_ids(texts: list[str]) -> list[int]:
    import open_clip

    return open_clip.tokenizer.SimpleTokenizer()(texts).unique().tolist()


def test_round_trip_identical_outputs(tiny_config, tmp_path):
    model = make_model(tiny_config)
    model.metadata = {"class_names": NAMES, "seen": [0, 1]}
    path = save(model, tmp_path / "sub" / "model.ckpt", metadata={"note": "test"})
    assert path.is_file() and not list(path.parent.glob("*.tmp"))
    loaded = zegclip.load(path, precision="fp32")  # fp32: outputs compared exactly
    assert not loaded.training
    assert loaded.config == model.config
    assert loaded.metadata == {"class_names": NAMES, "seen": [0, 1], "note": "test"}
    assert_same_weights(loaded, model)
    assert torch.equal(outputs(loaded), outputs(model))
    assert torch.equal(
        loaded.segment(torch.zeros(1, 3, 64, 64), mode="whole"),  # vocabulary from the metadata
        model.segment(torch.zeros(1, 3, 64, 64), NAMES, mode="whole"),
    )


@pytest.mark.parametrize("kind", ["state_dict", "compact"])
@pytest.mark.parametrize("ft_backbone", [False, True])
def test_without_clip_weights(tiny_config, tmp_path, kind, ft_backbone):
    config = dataclasses.replace(
        tiny_config,
        clip=CLIPConfig(arch=TINY_ARCH, weights=clip_file(tmp_path, kind)),
        ft_backbone=ft_backbone,
    )
    model = make_model(config)
    full = save(model, tmp_path / "full.ckpt")
    small = save(model, tmp_path / "small.ckpt", include_clip=False)
    payload = torch.load(small, weights_only=True)
    assert payload["includes_clip"] is False
    assert not any(k.startswith("text_encoder.") for k in payload["state_dict"])
    assert any(k.startswith("image_encoder.vit.") for k in payload["state_dict"]) == ft_backbone
    if not ft_backbone:  # prompts + decoder only; the tiny text tower alone is 1.6M values
        assert small.stat().st_size * 10 < full.stat().st_size
    else:
        assert small.stat().st_size * 2 < full.stat().st_size
    loaded = zegclip.load(small, precision="fp32")
    assert_same_weights(loaded, model)
    assert torch.equal(outputs(loaded), outputs(model))


def test_without_clip_needs_weights(tiny_config, tmp_path):
    model = make_model(tiny_config)  # random CLIP: nothing to rebuild it from
    with pytest.raises(ValueError, match=r"include_clip=False needs model\.config\.clip\.weights"):
        save(model, tmp_path / "x.ckpt", include_clip=False)
    assert not (tmp_path / "x.ckpt").exists()

    # a CLIP-less file whose config names no weights (e.g. edited by hand)
    config = dataclasses.replace(
        tiny_config, clip=CLIPConfig(arch=TINY_ARCH, weights=clip_file(tmp_path, "state_dict"))
    )
    path = save(make_model(config), tmp_path / "small.ckpt", include_clip=False)
    payload = torch.load(path, weights_only=True)
    payload["config"]["clip"]["weights"] = None
    torch.save(payload, path)
    with pytest.raises(
        ValueError, match=r"holds no CLIP weights and its config names none \(model\.clip\.weights\)"
    ):
        zegclip.load(path)


def test_without_clip_when_the_clip_file_is_gone(tiny_config, tmp_path):
    weights = clip_file(tmp_path, "state_dict")
    config = dataclasses.replace(tiny_config, clip=CLIPConfig(arch=TINY_ARCH, weights=weights))
    path = save(make_model(config), tmp_path / "small.ckpt", include_clip=False)
    (tmp_path / "clip_state_dict.pt").unlink()
    with pytest.raises(FileNotFoundError, match=r"clip_state_dict\.pt.*model\.clip\.weights"):
        zegclip.load(path)


def test_lightning_checkpoint_layout(tiny_config, tmp_path):
    model = make_model(tiny_config)
    ckpt = {
        "epoch": 0,
        "global_step": 10,
        "hyper_parameters": {"model_config": model.config.to_dict(), "metadata": {"class_names": NAMES}},
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
    }
    torch.save(ckpt, tmp_path / "last.ckpt")
    loaded = zegclip.load(tmp_path / "last.ckpt", precision="fp32")
    assert loaded.metadata == {"class_names": NAMES, "global_step": 10}  # the step recorded in metrics.json
    assert_same_weights(loaded, model)
    assert torch.equal(outputs(loaded), outputs(model))


@pytest.mark.parametrize("precision", ["bf16", torch.bfloat16])
def test_load_in_bf16(tiny_config, tmp_path, precision):
    model = make_model(tiny_config)
    path = save(model, tmp_path / "m.ckpt")
    loaded = zegclip.load(path, precision=precision)
    assert all(p.dtype == torch.bfloat16 for p in loaded.parameters())
    scores = outputs(loaded)
    assert scores.dtype == torch.bfloat16 and scores.shape == (2, 3, 64, 90)
    assert (scores.float() - outputs(model)).abs().max() < 0.05
    assert all(p.dtype == torch.float32 for p in zegclip.load(path, precision="fp32").parameters())


def test_bad_precision(tiny_config, tmp_path):
    path = save(make_model(tiny_config), tmp_path / "m.ckpt")
    with pytest.raises(ValueError, match=r"precision must be one of .*got 'fp8'"):
        zegclip.load(path, precision="fp8")
