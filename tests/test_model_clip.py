"""CLIP loading (open_clip names, OpenAI TorchScript, state dicts, compact files), positional-embedding
resizing, activation choice, and the learnable-parameter count of the paper's configurations."""

from __future__ import annotations

import copy

import open_clip
import pytest
import torch
import torch.nn.functional as F
from open_clip.transformer import QuickGELU
from tiny_model import TINY_ARCH
from torch import nn

from zegclip import CLIPConfig, ZegCLIP, ZegCLIPConfig
from zegclip.model.clip import architecture, create_clip, expand_compact_state_dict, save_compact_clip

# docs/method.md §1: the official count and the two groups of official parameters we leave out.
OFFICIAL_VOC = 13_821_184
NEVER_USED = 3_154_944  # each decoder layer's self-attention (1,050,624) and norm1 (1,024), x3
UNREAD = 2_627_072  # last decoder layer's v, proj, FFN, norm2, norm3: queries nothing reads
PROMPT_ROWS = 12  # 1 shallow + 11 deep prompt sets of ViT-B/16


def tiny_clip(seed: int = 0, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return create_clip(CLIPConfig(arch=TINY_ARCH, **kwargs))


def assert_same_state(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert set(actual) == set(expected), set(actual) ^ set(expected)
    for key, value in expected.items():
        assert actual[key].dtype == value.dtype, key
        assert torch.equal(actual[key], value), f"{key} differs"


# ----------------------------------------------------------------------------- parameter count


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize(
    ("prompt_tokens", "official"),
    [(10, OFFICIAL_VOC), (100, OFFICIAL_VOC + 90 * 768 * PROMPT_ROWS)],  # VOC 13.8M, COCO-Stuff 14.65M
    ids=["voc", "coco"],
)
def test_learnable_parameters_of_vit_b16(prompt_tokens, official):
    model = ZegCLIP(
        ZegCLIPConfig(
            clip=CLIPConfig(model_name="ViT-B-16"),
            image_size=512,
            prompt_tokens=prompt_tokens,
            decoder_heads=8,
        )
    )
    enc = model.image_encoder
    assert (enc.patch_size, enc.width, enc.num_layers, enc.train_grid) == (16, 768, 12, (32, 32))
    assert model.embed_dim == 512
    expected = official - NEVER_USED - UNREAD
    assert count_trainable(model) == expected  # 8,039,168 (VOC) and 8,868,608 (COCO-Stuff)
    # where they are: prompts, the descriptor's Linear(1024, 512), two full decoder layers
    # + the last one's q/k
    prompts = PROMPT_ROWS * prompt_tokens * 768 + (768 * 768 + 768) + 2 * 768
    full_layer = 4 * (512 * 512 + 512) + 2 * (2 * 512) + (512 * 2048 + 2048) + (2048 * 512 + 512)
    assert count_trainable(model.image_encoder) == prompts
    assert count_trainable(model.relationship) == 1024 * 512 + 512
    assert count_trainable(model.decoder) == 2 * full_layer + 2 * (512 * 512 + 512)
    assert count_trainable(model.text_encoder) == 0


def test_default_clip_is_vit_b16_with_quick_gelu():
    config = ZegCLIPConfig()
    assert config.clip.model_name == "ViT-B-16" and config.clip.quick_gelu and config.clip.weights is None
    arch = architecture(CLIPConfig(image_size=512))
    assert arch["vision_cfg"]["patch_size"] == 16 and arch["vision_cfg"]["width"] == 768
    assert arch["vision_cfg"]["image_size"] == 512


# ----------------------------------------------------------------------------- ViT-L-14


def reduced_vit_l14() -> dict:
    arch = copy.deepcopy(open_clip.get_model_config("ViT-L-14"))
    assert arch["vision_cfg"]["patch_size"] == 14 and arch["vision_cfg"]["width"] == 1024
    arch["vision_cfg"]["layers"] = 2
    arch["text_cfg"]["layers"] = 1
    return arch


def test_vit_l14_architecture_by_name():
    arch = architecture(CLIPConfig(model_name="ViT-L-14", image_size=448))
    assert arch["vision_cfg"] == {**open_clip.get_model_config("ViT-L-14")["vision_cfg"], "image_size": 448}
    assert arch["embed_dim"] == 768


def test_reduced_depth_vit_l14_forward():
    torch.manual_seed(0)
    model = ZegCLIP(
        ZegCLIPConfig(
            clip=CLIPConfig(arch=reduced_vit_l14()), image_size=56, prompt_tokens=4, decoder_heads=8
        )
    )
    enc = model.image_encoder
    assert (enc.patch_size, enc.width, enc.num_layers, enc.train_grid) == (14, 1024, 2, (4, 4))
    assert isinstance(enc.vit.transformer.resblocks[0].mlp.gelu, QuickGELU)
    model.eval()
    text = model.class_embeddings(["cat", "dog", "grass"])
    assert text.shape == (3, 768)
    with torch.no_grad():
        out = model(torch.randn(2, 3, 56, 56), text)
    assert out.visual_embedding.shape == (2, 768, 4, 4)
    assert out.pred_masks.shape == (2, 3, 56, 56) and torch.isfinite(out.pred_masks).all()
    scores = model.segment(torch.randn(1, 3, 70, 84), ["cat", "dog", "grass"], mode="whole")
    assert scores.shape == (1, 3, 70, 84)


@pytest.mark.slow
def test_full_size_vit_l14_forward():
    model = ZegCLIP(
        ZegCLIPConfig(clip=CLIPConfig(model_name="ViT-L-14"), image_size=224, prompt_tokens=10)
    ).eval()
    assert (model.image_encoder.width, model.image_encoder.num_layers, model.image_encoder.patch_size) == (
        1024,
        24,
        14,
    )
    text = model.class_embeddings(["cat", "dog"])
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224), text)
    assert out.layer_logits[-1].shape == (1, 2, 16, 16)
    assert out.pred_masks.shape == (1, 2, 224, 224) and torch.isfinite(out.pred_masks).all()


# ----------------------------------------------------------------------------- weight files


class _OpenAIArchive(nn.Module):
    """Holds a CLIP's submodules and parameters under the same names, plus the three integer
    entries the OpenAI TorchScript files carry, so that tracing it yields a look-alike archive."""

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        for name, child in clip.named_children():
            self.add_module(name, child)
        for name, param in clip.named_parameters(recurse=False):
            self.register_parameter(name, param)
        self.register_buffer("input_resolution", torch.tensor(64))
        self.register_buffer("context_length", torch.tensor(77))
        self.register_buffer("vocab_size", torch.tensor(49408))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.logit_scale


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("half", [False, True], ids=["fp32", "fp16"])
def test_openai_torchscript_file(tmp_path, half):
    source = tiny_clip(seed=1)
    expected = {k: v.half().float() if half else v for k, v in source.state_dict().items()}
    wrapper = _OpenAIArchive(copy.deepcopy(source))
    if half:  # the real archives are float16
        wrapper = wrapper.half()
    traced = torch.jit.trace(wrapper, torch.ones(2, dtype=torch.float16 if half else torch.float32))
    path = tmp_path / "ViT-tiny.pt"
    traced.save(str(path))
    assert {"input_resolution", "context_length", "vocab_size"} <= set(torch.jit.load(str(path)).state_dict())

    loaded = create_clip(CLIPConfig(arch=TINY_ARCH, weights=str(path)))
    assert_same_state(loaded.state_dict(), expected)
    assert not loaded.training


@pytest.mark.parametrize("layout", ["plain", "nested", "ddp"])
def test_plain_state_dict_file(tmp_path, layout):
    source = tiny_clip(seed=2)
    state = source.state_dict()
    if layout == "nested":
        state = {"state_dict": state, "epoch": 3}
    elif layout == "ddp":
        state = {f"module.{k}": v for k, v in state.items()}
    path = tmp_path / "clip.pth"
    torch.save(state, path)
    loaded = create_clip(CLIPConfig(arch=TINY_ARCH, weights=str(path)))
    assert_same_state(loaded.state_dict(), source.state_dict())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_compact_clip_round_trip(tmp_path, dtype):
    source = tiny_clip(seed=3)
    texts = ["a photo of a cat", "a photo of a dog"]
    tokenizer = open_clip.tokenizer.SimpleTokenizer()
    ids = tokenizer(texts).unique()
    path = tmp_path / "compact.pt"
    save_compact_clip(source, TINY_ARCH, path, ids.tolist(), dtype=dtype)

    full = source.state_dict()
    expanded = expand_compact_state_dict(torch.load(path, weights_only=True))
    assert set(expanded) == set(full)
    for key, value in full.items():
        if key != "token_embedding.weight":
            assert torch.equal(expanded[key], value.to(dtype).float()), key
    table = expanded["token_embedding.weight"]
    assert table.shape == full["token_embedding.weight"].shape and table.dtype == torch.float32
    kept = torch.zeros(table.shape[0], dtype=torch.bool)
    kept[ids] = True
    assert torch.equal(table[kept], full["token_embedding.weight"][kept].to(dtype).float())
    assert not table[~kept].any()

    # the file carries its architecture: no arch needed in the config
    loaded = create_clip(CLIPConfig(weights=str(path)))
    assert loaded.visual.conv1.out_channels == TINY_ARCH["vision_cfg"]["width"]
    assert_same_state(loaded.state_dict(), expanded)
    if dtype == torch.float32:  # texts made of the kept tokens encode exactly as before
        tokens = tokenizer(texts)
        with torch.no_grad():
            assert torch.equal(loaded.encode_text(tokens), source.encode_text(tokens))


@pytest.mark.parametrize("quick", [True, False])
def test_quick_gelu_flag(quick):
    clip = tiny_clip(quick_gelu=quick)
    blocks = list(clip.visual.transformer.resblocks) + list(clip.transformer.resblocks)
    acts = [block.mlp.gelu for block in blocks]
    assert all(isinstance(a, QuickGELU) for a in acts) if quick else all(type(a) is nn.GELU for a in acts)
    x = torch.linspace(-4, 4, 101)
    expected = x * torch.sigmoid(1.702 * x) if quick else F.gelu(x)
    assert torch.allclose(acts[0](x), expected, atol=1e-6)


def test_positional_embedding_resized_bilinearly(tmp_path):
    source = tiny_clip(seed=4)  # 64 px, patch 16: 4x4 grid
    path = tmp_path / "clip.pt"
    torch.save(source.state_dict(), path)
    pos = source.visual.positional_embedding.detach()
    width = pos.shape[1]
    grid = pos[1:].reshape(1, 4, 4, width).permute(0, 3, 1, 2)

    def expected(mode: str, size: int) -> torch.Tensor:
        kwargs = {"align_corners": False}
        spatial = F.interpolate(grid, size=(size, size), mode=mode, **kwargs)
        return torch.cat([pos[:1], spatial.permute(0, 2, 3, 1).reshape(size * size, width)])

    loaded = create_clip(CLIPConfig(arch=TINY_ARCH, weights=str(path), image_size=96))  # 6x6 grid
    resized = loaded.visual.positional_embedding.detach()
    assert resized.shape == (37, width)
    assert torch.allclose(resized, expected("bilinear", 6), atol=1e-6, rtol=0)
    assert not torch.allclose(resized, expected("bicubic", 6), atol=1e-3)  # not open_clip's bicubic
    others = {k: v for k, v in loaded.state_dict().items() if k != "visual.positional_embedding"}
    assert_same_state(
        others, {k: v for k, v in source.state_dict().items() if k != "visual.positional_embedding"}
    )

    # ZegCLIP sets the CLIP grid to its crop size the same way
    model = ZegCLIP(
        ZegCLIPConfig(
            clip=CLIPConfig(arch=TINY_ARCH, weights=str(path)),
            image_size=32,
            prompt_tokens=2,
            decoder_heads=4,
        )
    )
    assert model.image_encoder.train_grid == (2, 2)
    assert torch.allclose(
        model.image_encoder.vit.positional_embedding.detach(), expected("bilinear", 2), atol=1e-6
    )


def test_missing_weights_file_names_config_key(tmp_path):
    missing = tmp_path / "pretrained" / "ViT-B-16.pt"
    with pytest.raises(FileNotFoundError, match=r"model\.clip\.weights") as info:
        create_clip(CLIPConfig(arch=TINY_ARCH, weights=str(missing)))
    assert str(missing) in str(info.value)
    with pytest.raises(FileNotFoundError, match=r"model\.clip\.weights"):
        ZegCLIP(
            ZegCLIPConfig(
                clip=CLIPConfig(arch=TINY_ARCH, weights=str(missing)),
                image_size=64,
                prompt_tokens=2,
                decoder_heads=4,
            )
        )


def test_weights_of_another_architecture_are_refused(tmp_path):
    path = tmp_path / "clip.pt"
    torch.save(tiny_clip().state_dict(), path)
    other = copy.deepcopy(TINY_ARCH)
    other["vision_cfg"]["layers"] = 2
    with pytest.raises(ValueError, match="do not match the architecture"):
        create_clip(CLIPConfig(arch=other, weights=str(path)))


def test_unknown_model_name():
    with pytest.raises(ValueError, match="Unknown open_clip model name 'ViT-Q-99'"):
        create_clip(CLIPConfig(model_name="ViT-Q-99"))
