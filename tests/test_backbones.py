"""``model=vit_b16_laion`` and friends: open_clip ViTs with LAION-2B / DataComp weights (GELU).

No network and no real weights here: the configs are checked against open_clip's pretrained list,
and the loading path runs on random weights of the right architecture saved the way the Hugging
Face repositories hold them (``open_clip_model.safetensors`` / ``open_clip_pytorch_model.bin``).
"""

from __future__ import annotations

import copy
from pathlib import Path

import open_clip
import pytest
import torch
from hydra_compose import compose_config
from omegaconf import OmegaConf
from open_clip.model import CLIP
from open_clip.transformer import QuickGELU
from safetensors.torch import save_file
from torch import nn

from zegclip import ZegCLIP, ZegCLIPConfig
from zegclip.model.clip import CLIPConfig, create_clip

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
BACKBONES = {  # config -> (open_clip architecture, pretrained tag)
    "vit_b16_laion": ("ViT-B-16", "laion2b_s34b_b88k"),
    "vit_b16_datacomp": ("ViT-B-16", "datacomp_xl_s13b_b90k"),
    "vit_l14_laion": ("ViT-L-14", "laion2b_s32b_b82k"),
    "vit_l14_datacomp": ("ViT-L-14", "datacomp_xl_s13b_b90k"),
}


def model_config(name: str, *overrides: str) -> dict:
    """``conf/model/<name>.yaml`` as composed by ``python train.py dataset=voc model=<name> ...``."""
    cfg = compose_config(
        "train",
        ["dataset=voc", f"model={name}", "paths.root_dir=/unused", "paths.output_dir=/unused", *overrides],
    )
    return OmegaConf.to_container(cfg.model, resolve=True)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_config_names_a_known_open_clip_tag_with_gelu(name: str) -> None:
    arch, tag = BACKBONES[name]
    model = model_config(name)
    assert (model["clip"]["model_name"], model["clip"]["weights"]) == (arch, tag)
    assert (arch, tag) in open_clip.list_pretrained()
    assert model["clip"]["quick_gelu"] is False
    # everything else comes from vit_b16.yaml / vit_l14.yaml and the VOC recipe
    base = model_config("vit_b16" if arch == "ViT-B-16" else "vit_l14")
    assert {k: v for k, v in model.items() if k != "clip"} == {k: v for k, v in base.items() if k != "clip"}
    assert model["prompt_tokens"] == 10 and model["image_size"] == 512
    assert model_config(name, "dataset=coco")["prompt_tokens"] == 100  # the recipe still applies


def random_clip_file(arch: str, path: Path, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    """Random weights of ``arch`` (GELU), saved like the hub's files; returns the saved tensors."""
    torch.manual_seed(0)
    model = CLIP(**open_clip.get_model_config(arch), quick_gelu=False)
    state = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items() if k != "attn_mask"}
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return state


@pytest.mark.parametrize(
    "name",
    ["vit_b16_datacomp", pytest.param("vit_b16_laion", marks=pytest.mark.slow)],  # 300 MB each
)
def test_vit_b16_from_a_local_weights_file(name: str, tmp_path: Path) -> None:
    """The offline route: model.clip.weights=<file>; GELU blocks, the file's weights, one forward."""
    suffix = ".safetensors" if name.endswith("datacomp") else ".bin"
    path = tmp_path / f"open_clip_model{suffix}"
    saved = random_clip_file("ViT-B-16", path)
    config = model_config(name, f"model.clip.weights={path}", "dataset.crop_size=64")
    model = ZegCLIP(ZegCLIPConfig.from_dict(config)).eval()
    del config
    block = model.image_encoder.vit.transformer.resblocks[0]
    assert isinstance(block.mlp.gelu, nn.GELU) and not isinstance(block.mlp.gelu, QuickGELU)
    assert torch.equal(model.image_encoder.vit.conv1.weight, saved["visual.conv1.weight"].float())
    assert torch.equal(model.text_encoder.ln_final.weight, saved["ln_final.weight"].float())
    del saved
    text = model.class_embeddings(["cat", "dog", "grass"])
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64), text)
    assert out.visual_embedding.shape == (1, 512, 4, 4)
    assert out.pred_masks.shape == (1, 3, 64, 64) and torch.isfinite(out.pred_masks).all()


@pytest.mark.parametrize("name", ["vit_l14_laion", "vit_l14_datacomp"])
def test_vit_l14_architecture_with_gelu(name: str) -> None:
    """ViT-L/14 (428M parameters) at reduced depth: the config's architecture, GELU, one forward."""
    config = model_config(name, "model.clip.weights=null", "dataset.crop_size=56")
    arch = copy.deepcopy(open_clip.get_model_config(config["clip"]["model_name"]))
    assert (arch["vision_cfg"]["width"], arch["vision_cfg"]["patch_size"], arch["embed_dim"]) == (
        1024,
        14,
        768,
    )
    arch["vision_cfg"]["layers"], arch["text_cfg"]["layers"] = 2, 1
    config["clip"]["arch"] = arch
    torch.manual_seed(0)
    model = ZegCLIP(ZegCLIPConfig.from_dict(config)).eval()
    assert isinstance(model.image_encoder.vit.transformer.resblocks[0].mlp.gelu, nn.GELU)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 56, 56), model.class_embeddings(["cat", "dog"]))
    assert out.visual_embedding.shape == (1, 768, 4, 4) and torch.isfinite(out.pred_masks).all()


@pytest.mark.slow
def test_vit_l14_full_size_from_a_local_weights_file(tmp_path: Path) -> None:
    path = tmp_path / "open_clip_model.safetensors"
    saved = random_clip_file("ViT-L-14", path)
    config = model_config("vit_l14_laion", f"model.clip.weights={path}", "dataset.crop_size=56")
    model = ZegCLIP(ZegCLIPConfig.from_dict(config)).eval()
    assert len(model.image_encoder.vit.transformer.resblocks) == 24
    assert isinstance(model.image_encoder.vit.transformer.resblocks[23].mlp.gelu, nn.GELU)
    assert torch.equal(model.image_encoder.vit.proj, saved["visual.proj"].float())
    with torch.no_grad():
        out = model(torch.randn(1, 3, 56, 56), model.class_embeddings(["cat"]))
    assert out.pred_masks.shape == (1, 1, 56, 56) and torch.isfinite(out.pred_masks).all()


def test_tag_without_network_names_the_file_to_download(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise OSError("Failed to download file (open_clip_pytorch_model.bin): no connection")

    monkeypatch.setattr(open_clip, "download_pretrained", no_network)
    monkeypatch.setattr(open_clip, "create_model", no_network)
    config = CLIPConfig(model_name="ViT-B-16", weights="datacomp_xl_s13b_b90k", quick_gelu=False)
    with pytest.raises(RuntimeError) as info:
        create_clip(config)
    message = str(info.value)
    assert "model.clip.weights" in message and "no connection" in message
    assert "open_clip_model.safetensors" in message
    assert "https://huggingface.co/laion/CLIP-ViT-B-16-DataComp.XL-s13B-b90K" in message


def test_tag_with_the_hub_offline_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real open_clip download attempt, refused by HF_HUB_OFFLINE, before any ViT-B/16 is built."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(
        huggingface_hub.constants, "HF_HUB_OFFLINE", True
    )  # read at import: the env alone is late
    built: list[object] = []
    create_model = open_clip.create_model
    monkeypatch.setattr(open_clip, "create_model", lambda *a, **k: built.append(a) or create_model(*a, **k))
    with pytest.raises(RuntimeError, match=r"huggingface\.co/laion/CLIP-ViT-B-16-laion2B-s34B-b88K"):
        create_clip(CLIPConfig(model_name="ViT-B-16", weights="laion2b_s34b_b88k", quick_gelu=False))
    assert not built, "the model was built before the download was tried"


def test_unreadable_safetensors_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "open_clip_model.safetensors"
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=r"Cannot read CLIP weights from .*open_clip_model\.safetensors"):
        create_clip(CLIPConfig(model_name="ViT-B-16", weights=str(path), quick_gelu=False))


def test_missing_weights_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "absent" / "open_clip_model.safetensors"
    with pytest.raises(FileNotFoundError, match="model.clip.weights"):
        create_clip(CLIPConfig(model_name="ViT-B-16", weights=str(path), quick_gelu=False))
