"""Deliberately wrong inputs raise errors that name the problem."""

from __future__ import annotations

import argparse

import pytest
import torch
from tiny_model import TINY_ARCH

import zegclip
from zegclip import CLIPConfig, ZegCLIP, ZegCLIPConfig
from zegclip.model.clip import create_clip

NAMES = ["cat", "dog", "grass"]


@pytest.fixture(scope="module")
def model() -> ZegCLIP:
    torch.manual_seed(0)
    return ZegCLIP(
        ZegCLIPConfig(clip=CLIPConfig(arch=TINY_ARCH), image_size=64, prompt_tokens=3, decoder_heads=4)
    ).eval()


# ----------------------------------------------------------------------------- image channels


@pytest.mark.parametrize("shape", [(1, 4, 64, 64), (1, 1, 64, 64), (3, 64, 64)])
def test_wrong_image_channels_in_segment(model, shape):
    with pytest.raises(
        ValueError, match=r"pixel_values must be a \(B, 3, H, W\) tensor.*got " + rf"\({shape[0]}, "
    ):
        model.segment(torch.randn(*shape), NAMES)


def test_wrong_image_channels_in_forward(model):
    text = model.class_embeddings(NAMES)
    with pytest.raises(ValueError, match=r"images must be \(B, 3, H, W\), got \(2, 4, 64, 64\)"):
        model(torch.randn(2, 4, 64, 64), text)
    with pytest.raises(ValueError, match=r"pixel_values must be a \(B, 3, H, W\) tensor"):
        model.segment([[0.0]], NAMES)  # not a tensor at all


# ----------------------------------------------------------------------------- class list


def test_empty_class_list(model):
    image = torch.randn(1, 3, 64, 64)
    with pytest.raises(ValueError, match="class_names is empty"):
        model.segment(image, [])
    with pytest.raises(ValueError, match="class_names is empty"):
        model.segment(image)  # no names given and none in the metadata
    with pytest.raises(ValueError, match="class_names is empty"):
        model.class_embeddings([])
    with pytest.raises(ValueError, match="text_embeddings is empty"):
        model(image, torch.zeros(0, 32))
    with pytest.raises(ValueError, match=r"text_embeddings must be \(C, 32\), got \(3, 16\)"):
        model(image, torch.zeros(3, 16))


# ----------------------------------------------------------------------------- seen indices


@pytest.mark.parametrize("seen", [[3], [0, 5], [-1]])
def test_seen_index_out_of_range(model, seen):
    bad = [i for i in seen if not 0 <= i < 3]
    with pytest.raises(ValueError, match=rf"seen indices \[{bad[0]}\] are out of range for 3 classes"):
        model.segment(torch.randn(1, 3, 64, 64), NAMES, seen=seen)


# ----------------------------------------------------------------------------- weights file


def test_missing_clip_weights_file(tmp_path):
    path = tmp_path / "ViT-B-16.pt"
    with pytest.raises(
        FileNotFoundError, match=r"CLIP weights file not found.*ViT-B-16\.pt.*model\.clip\.weights"
    ):
        create_clip(CLIPConfig(weights=str(path)))
    with pytest.raises(FileNotFoundError, match=r"model\.clip\.weights"):
        ZegCLIP(
            ZegCLIPConfig(clip=CLIPConfig(arch=TINY_ARCH, weights=str(path)), image_size=64, decoder_heads=4)
        )


def test_unreadable_clip_weights_file(tmp_path):
    path = tmp_path / "clip.pt"
    path.write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"Cannot read CLIP weights from .*clip\.pt"):
        create_clip(CLIPConfig(arch=TINY_ARCH, weights=str(path)))
    torch.save([1, 2, 3], path)
    with pytest.raises(ValueError, match="is not a CLIP state dict"):
        create_clip(CLIPConfig(arch=TINY_ARCH, weights=str(path)))


def test_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Checkpoint not found: .*nothing\.ckpt"):
        zegclip.load(tmp_path / "nothing.ckpt")


# ----------------------------------------------------------------------------- checkpoint format


@pytest.mark.parametrize(
    "content",
    [
        {"weights": {"layer.weight": torch.zeros(2)}},  # some other model's dict
        {"state_dict": {"encoder.weight": torch.zeros(2)}},  # a state dict, but not ZegCLIP's
        {"state_dict": {"backbone.conv1.weight": torch.zeros(2)}},  # backbone without a decode head
        torch.zeros(3),
        [1, 2],
    ],
    ids=["other_dict", "other_state_dict", "backbone_only", "tensor", "list"],
)
def test_checkpoint_of_neither_format(tmp_path, content):
    path = tmp_path / "model.pth"
    torch.save(content, path)
    with pytest.raises(
        ValueError, match=r"model\.pth.*is neither an official ZegCLIP checkpoint.*nor a zegclip"
    ):
        zegclip.load(path)


def test_checkpoint_that_is_not_a_torch_file(tmp_path):
    path = tmp_path / "model.pth"
    path.write_bytes(b"\x89PNG not a checkpoint")
    with pytest.raises(ValueError, match=r"Cannot read .*model\.pth.* as a torch checkpoint"):
        zegclip.load(path)


def test_checkpoint_whose_weights_do_not_fit(model, tmp_path):
    path = zegclip.save(model, tmp_path / "m.ckpt")
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["decoder.layers.9.q.weight"] = torch.zeros(1)
    del payload["state_dict"]["relationship.q_proj.bias"]
    torch.save(payload, path)
    with pytest.raises(
        ValueError,
        match=r"weights do not fit the model: missing \['relationship\.q_proj\.bias'\], "
        r"unexpected \['decoder\.layers\.9\.q\.weight'\]",
    ):
        zegclip.load(path)


def test_unknown_config_key(model, tmp_path):
    path = zegclip.save(model, tmp_path / "m.ckpt")
    payload = torch.load(path, weights_only=True)
    payload["config"]["prompt_token"] = 10
    torch.save(payload, path)
    with pytest.raises(ValueError, match=r"Unknown ZegCLIP config keys \['prompt_token'\]"):
        zegclip.load(path)


# ------------------------------------------------------------------------ values that used to pass silently


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("prompt_tokens", -1),
        ("decoder_layers", 0),
        ("decoder_heads", 0),
        ("prompt_dropout", 1.5),
        ("image_size", 0),
        ("deep_prompt_layers", -2),
        ("prompt_tokens", 2.5),
    ],
)
def test_invalid_architecture_values_are_refused(key, value):
    with pytest.raises(ValueError, match=rf"model\.{key}={value!r}: expected"):
        ZegCLIPConfig(**{key: value})


def test_uint8_pixels_are_refused_with_the_normalisation_to_use(model):
    with pytest.raises(
        ValueError, match=r"dtype torch\.uint8: segment\(\) takes float pixels normalised with the ImageNet"
    ):
        model.segment(torch.zeros(1, 3, 64, 64, dtype=torch.uint8), NAMES)


def test_a_nan_pixel_is_refused(model):
    image = torch.zeros(1, 3, 64, 64)
    image[0, 1, 5, 7] = float("nan")
    with pytest.raises(ValueError, match=r"pixel_values holds 1 NaN/inf value\(s\)"):
        model.segment(image, NAMES)


def test_an_empty_batch_is_refused(model):
    with pytest.raises(ValueError, match=r"empty batch \(B = 0\)"):
        model.segment(torch.zeros(0, 3, 64, 64), NAMES)


@pytest.mark.parametrize("mode", ["slide", "whole"])
def test_images_smaller_than_a_patch_are_refused(model, mode):
    with pytest.raises(ValueError, match=r"images of 8x30 pixels are smaller than one 16x16 patch"):
        model.segment(torch.zeros(1, 3, 8, 30), NAMES, mode=mode)


def test_a_checkpoint_whose_config_does_not_match_its_weights_names_the_file(model, tmp_path):
    path = zegclip.save(model, tmp_path / "m.ckpt")
    payload = torch.load(path, weights_only=True)
    payload["config"]["prompt_tokens"] = 7  # the weights hold 3 prompt tokens
    torch.save(payload, path)
    with pytest.raises(ValueError) as info:
        zegclip.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "do not fit the architecture" in message
    assert (
        "prompt_tokens=7" in message
        and "image_encoder.prompt_embeddings (1, 3, 64) (model: (1, 7, 64))" in message
    )
    assert message.count("\n") == 0 and len(message) < 1000  # one line, not a page of size mismatches


def test_the_weights_only_hint_is_given_only_when_it_applies(tmp_path):
    pickled = tmp_path / "objects.pth"
    torch.save({"state_dict": {}, "config": argparse.Namespace(lr=1)}, pickled)  # a pickled object
    with pytest.raises(ValueError, match="holds pickled Python objects.*pass weights_only=False"):
        zegclip.load(pickled)
    garbage = tmp_path / "model.pth"
    garbage.write_bytes(b"\x89PNG not a checkpoint")
    for weights_only in (True, False):  # loading it without weights_only would not help
        with pytest.raises(ValueError, match="truncated or not a checkpoint") as info:
            zegclip.load(garbage, weights_only=weights_only)
        assert "weights_only=False" not in str(info.value)
