"""The image-level API: reading any image, evaluation's geometry, model.predict and its result."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import zegclip
from zegclip.common.constants import IGNORE_INDEX
from zegclip.common.images import ImageReadError, read_image, resize_short_side
from zegclip.common.palette import palette
from zegclip.data.shapes import ShapesWorld
from zegclip.data.transforms import build_test_transform
from zegclip.model.prediction import Prediction
from zegclip.model.preprocess import normalize


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return zegclip.load("shapes")


@pytest.fixture(scope="module")
def scene():
    """A shapes-world image and its labels, enlarged 5x (nearest) to 320 x 320."""
    image, label = ShapesWorld("compositional", seed=2024).sample(3)
    return np.repeat(np.repeat(image, 5, 0), 5, 1), np.repeat(np.repeat(label, 5, 0), 5, 1)


# ----------------------------------------------------------------------------- reading images


def _rgb(h=6, w=9, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_read_image_modes(tmp_path):
    rgb = _rgb()
    grey = rgb[..., 0]
    cases = {
        "rgb.png": (Image.fromarray(rgb), rgb),
        "grey.png": (Image.fromarray(grey), np.repeat(grey[..., None], 3, 2)),
        "rgba.png": (Image.fromarray(np.dstack([rgb, np.full(grey.shape, 7, np.uint8)])), rgb),
        "grey16.png": (Image.fromarray(grey.astype(np.uint16) * 257), np.repeat(grey[..., None], 3, 2)),
        "palette.png": (Image.fromarray(rgb).quantize(16), None),
    }
    for name, (im, expected) in cases.items():
        im.save(tmp_path / name)
        out = read_image(tmp_path / name)
        assert out.shape == (6, 9, 3) and out.dtype == np.uint8, name
        if expected is not None:
            assert np.array_equal(out, expected), name
    assert np.array_equal(
        read_image(tmp_path / "palette.png"), np.asarray(Image.open(tmp_path / "palette.png").convert("RGB"))
    )


def test_read_image_16bit_rgb_png(tmp_path):
    import cv2

    rgb16 = np.random.default_rng(1).integers(0, 65536, size=(5, 7, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "rgb16.png"), rgb16[..., ::-1])
    assert np.array_equal(read_image(tmp_path / "rgb16.png"), (rgb16 >> 8).astype(np.uint8))


def test_read_image_applies_exif_orientation(tmp_path):
    rgb = _rgb(4, 10)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(rgb).save(tmp_path / "rotated.jpg", exif=exif, quality=100)
    out = read_image(tmp_path / "rotated.jpg")
    assert out.shape == (10, 4, 3)
    stored = np.asarray(Image.open(tmp_path / "rotated.jpg").convert("RGB"))
    assert np.array_equal(out, np.rot90(stored, k=-1))


def test_read_image_arrays():
    rgb = _rgb()
    assert np.array_equal(read_image(rgb), rgb)
    assert np.array_equal(read_image(Image.fromarray(rgb)), rgb)
    assert np.array_equal(read_image(rgb[..., 0]), np.repeat(rgb[..., :1], 3, 2))
    assert np.array_equal(read_image(np.dstack([rgb, rgb[..., :1]])), rgb)
    assert np.array_equal(read_image(rgb.astype(np.uint16) * 256), rgb)
    assert np.array_equal(read_image(rgb / 255.0), rgb)


def test_read_image_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ImageReadError, match="notes.png"):
        read_image(tmp_path / "notes.png")
    buffer = io.BytesIO()
    Image.fromarray(_rgb(64, 64)).save(buffer, format="PNG")
    (tmp_path / "cut.png").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageReadError, match="cut.png"):
        read_image(tmp_path / "cut.png")
    with pytest.raises(ImageReadError, match="segment"):
        read_image(torch.zeros(1, 3, 8, 8))  # type: ignore[arg-type]
    with pytest.raises(ImageReadError, match="shape"):
        read_image(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ImageReadError, match="dtype"):
        read_image(np.zeros((4, 4, 3), np.int8) - 1)


def test_preprocessing_is_the_evaluation_transform():
    image = _rgb(240, 320, seed=3)
    ours = normalize(resize_short_side(image, 64))
    theirs = build_test_transform(short_side=64)(image, np.zeros((240, 320), np.uint8))["image"]
    assert tuple(ours.shape) == (3, 64, 85)
    assert torch.allclose(ours, torch.from_numpy(theirs).permute(2, 0, 1), atol=1e-5)


# ----------------------------------------------------------------------------- model.predict


def test_predict_takes_paths_pil_images_and_arrays(model, scene, tmp_path):
    image, _ = scene
    Image.fromarray(image).save(tmp_path / "scene.png")
    by_path = model.predict(tmp_path / "scene.png")
    by_pil = model.predict(Image.fromarray(image))
    by_array = model.predict(image)
    assert by_path.label.shape == (320, 320) and by_path.source == str(tmp_path / "scene.png")
    assert np.array_equal(by_path.label, by_pil.label) and np.array_equal(by_path.label, by_array.label)
    assert by_path.class_names == model.metadata["class_names"]  # default vocabulary


def test_predict_is_evaluation_slide_inference_at_the_image_size(model, scene):
    image, _ = scene
    names = model.metadata["class_names"]
    pred = model.predict(image, names, seen=[1, 2], seen_bias=0.2, return_scores=True)
    x = torch.from_numpy(build_test_transform(short_side=64)(image, image[..., 0])["image"]).permute(2, 0, 1)[
        None
    ]
    scores = model.segment(
        x,
        names,
        seen=[1, 2],
        seen_bias=0.2,
        mode="slide",
        crop=64,
        stride=53,
        templates=model.metadata["templates"],
    )
    expected = F.interpolate(scores, size=(320, 320), mode="bilinear", align_corners=False)[0]
    assert pred.scores.shape == (16, 320, 320)
    assert torch.allclose(pred.scores, expected, atol=1e-5)
    assert (pred.label == expected.argmax(0).numpy()).mean() > 0.999
    assert np.array_equal(pred.label, pred.scores.argmax(0).numpy())


def test_predict_is_robust_to_the_input_scale(model):
    # Resizing to the model's scale is what makes large inputs work: a 5x enlarged image gets the
    # labels of the original (enlarged); whole-image inference at the enlarged size does not.
    world = ShapesWorld("compositional", seed=2024)
    agree, whole_agree = [], []
    names = model.metadata["class_names"]
    for i in range(4):
        image, _ = world.sample(i)
        big = np.repeat(np.repeat(image, 5, 0), 5, 1)
        reference = np.repeat(np.repeat(model.predict(image).label, 5, 0), 5, 1)
        agree.append((model.predict(big).label == reference).mean())
        whole = model.segment(normalize(big)[None], names, mode="whole")[0].argmax(0).numpy()
        whole_agree.append((whole == reference).mean())
    assert np.mean(agree) > 0.95
    assert np.mean(whole_agree) < 0.8


def test_predict_finds_the_objects(model, scene):
    image, label = scene
    pred = model.predict(image)
    objects = label != IGNORE_INDEX
    assert (pred.label[objects] == label[objects]).mean() > 0.6  # chance: 1/16


def test_predict_errors(model, scene):
    image, _ = scene
    with pytest.raises(ValueError, match="class_names is empty"):
        model.predict(image, [])
    with pytest.raises(ValueError, match="seen indices"):
        model.predict(image, ["red circle", "blue square"], seen=[5])
    with pytest.raises(ImageReadError, match="segment"):
        model.predict(torch.zeros(1, 3, 64, 64))


# ----------------------------------------------------------------------------- the result


def _prediction(num_classes=5):
    label = np.zeros((30, 40), np.int64)
    label[:, 10:] = 3
    label[20:, 30:] = num_classes - 1
    return Prediction(
        image=_rgb(30, 40), label=label, class_names=[f"c{i}" for i in range(num_classes)], source="x.png"
    )


def test_result_shares_dict_and_files(tmp_path):
    pred = _prediction()
    assert list(pred.shares()) == ["c3", "c0", "c4"]
    assert sum(pred.shares().values()) == pytest.approx(1.0)
    record = pred.to_dict()
    assert record["file"] == "x.png" and (record["height"], record["width"]) == (30, 40)
    assert record["classes"][0] == {"index": 3, "name": "c3", "share": round((30 * 30 - 10 * 10) / 1200, 6)}
    pred.save(label=tmp_path / "l.png", overlay=tmp_path / "o.png")
    label_png = Image.open(tmp_path / "l.png")
    assert label_png.mode == "P" and np.array_equal(np.asarray(label_png), pred.label)
    assert np.array_equal(np.asarray(label_png.getpalette()[: 5 * 3]).reshape(5, 3), palette(5))
    overlay_png = np.asarray(Image.open(tmp_path / "o.png"))
    assert np.array_equal(overlay_png, np.asarray(pred.overlay()))
    assert overlay_png.shape[0] == 270 and overlay_png.shape[1] > 360  # enlarged 9x, legend beside
    with pytest.raises(ValueError, match="label=PATH"):
        pred.save()


def test_result_label_png_beyond_256_classes_is_16_bit(tmp_path):
    pred = _prediction(300)
    pred.save(label=tmp_path / "l.png")
    back = Image.open(tmp_path / "l.png")
    assert back.mode.startswith("I") and np.array_equal(np.asarray(back), pred.label)
