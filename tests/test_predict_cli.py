"""`python predict.py`: inputs, outputs, failures, calibration, --help."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra_compose import compose_config
from PIL import Image

import zegclip
from zegclip.apps.predict import collect_inputs, output_names, predict
from zegclip.common.class_names import resolve_seen
from zegclip.data.shapes import ShapesWorld
from zegclip.model.inference import calibration

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return zegclip.load("shapes")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """A folder of shapes-world images in the modes users have: RGB, grey, RGBA, 16-bit grey,
    EXIF-rotated JPEG; plus one file that is not an image."""
    folder = tmp_path_factory.mktemp("photos")
    world = ShapesWorld("compositional", seed=11)
    images = [world.sample(i)[0] for i in range(5)]
    Image.fromarray(np.repeat(np.repeat(images[0], 3, 0), 4, 1)).save(folder / "wide.png")  # 192 x 256
    Image.fromarray(images[1]).convert("L").save(folder / "grey.png")
    rgba = np.dstack([images[2], np.full((64, 64), 200, np.uint8)])
    Image.fromarray(rgba).save(folder / "alpha.png")
    (folder / "deep").mkdir()
    Image.fromarray(images[3][..., 1].astype(np.uint16) * 257).save(folder / "deep" / "grey16.png")
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90 CCW to display
    Image.fromarray(images[4][:, :48]).save(folder / "phone.jpg", exif=exif, quality=95)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    return folder


def test_predict_command_end_to_end(photos, tmp_path, model):
    run = subprocess.run(
        [sys.executable, "predict.py", f"inputs={photos}", f"hydra.run.dir={tmp_path}"],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 1, output  # one file could not be read
    assert "broken.png" in output and "could not be read" in output and "segmented 5 image(s)" in output
    failures = [json.loads(line) for line in (tmp_path / "failures.json").read_text().splitlines()]
    assert [Path(f["file"]).name for f in failures] == ["broken.png"]

    records = {
        Path(r["file"]).name: r
        for r in map(json.loads, (tmp_path / "predictions.json").read_text().splitlines())
    }
    assert set(records) == {"wide.png", "grey.png", "alpha.png", "grey16.png", "phone.jpg"}
    assert (records["wide.png"]["height"], records["wide.png"]["width"]) == (192, 256)
    assert (records["phone.jpg"]["height"], records["phone.jpg"]["width"]) == (48, 64)  # EXIF applied
    names = model.metadata["class_names"]
    for name, stem in [("wide.png", "wide"), ("grey16.png", "deep/grey16"), ("phone.jpg", "phone")]:
        expected = model.predict(photos / Path(stem).parent / name)
        label = Image.open(tmp_path / "labels" / f"{stem}.png")
        assert label.mode == "P" and np.array_equal(np.asarray(label), expected.label), name
        overlay = np.asarray(Image.open(tmp_path / "overlays" / f"{stem}.png"))
        assert np.array_equal(overlay, np.asarray(expected.overlay())), name
        shares = {c["name"]: c["share"] for c in records[name]["classes"]}
        assert shares == pytest.approx(expected.shares(), abs=1e-6)
        assert all(c["name"] == names[c["index"]] for c in records[name]["classes"])
        assert sum(shares.values()) == pytest.approx(1.0, abs=1e-5)
    assert (tmp_path / "config_resolved.yaml").is_file()


def test_predict_help_documents_the_keys():
    run = subprocess.run(
        [sys.executable, "predict.py", "--help"],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    for key in (
        "inputs",
        "ckpt_path",
        "classes",
        "seen_bias",
        "mode",
        "precision",
        "device",
        "predictions.json",
    ):
        assert key in run.stdout


def _compose(tmp_path: Path, *overrides: str):
    return compose_config("predict", overrides, tmp_path)


def test_predict_with_own_classes_seen_names_and_a_glob(photos, tmp_path, model):
    cfg = _compose(
        tmp_path,
        f"inputs={photos}/*.png",
        "classes='red circle, blue square, yellow star'",
        "seen=[blue square]",
        "seen_bias=0.3",
        "mode=whole",
    )
    summary = predict(cfg)
    assert summary.exit_code == 1 and list(summary.failed) == [str(photos / "broken.png")]
    assert sorted(Path(f).name for f in summary.written) == [
        "alpha.png",
        "grey.png",
        "wide.png",
    ]  # no recursion
    classes = ["red circle", "blue square", "yellow star"]
    expected = model.predict(photos / "wide.png", classes, seen=[1], seen_bias=0.3, mode="whole")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "labels" / "wide.png")), expected.label)
    record = json.loads((tmp_path / "predictions.json").read_text().splitlines()[-1])
    assert record["file"].endswith("wide.png") and {c["name"] for c in record["classes"]} <= set(classes)


def test_predict_without_inputs_says_how(tmp_path):
    with pytest.raises(ValueError, match="inputs=IMAGE"):
        predict(_compose(tmp_path))


def test_collect_inputs(photos, tmp_path):
    everything = collect_inputs(str(photos))  # recursive, image suffixes only
    assert sorted(p.name for p in everything) == [
        "alpha.png",
        "broken.png",
        "grey.png",
        "grey16.png",
        "phone.jpg",
        "wide.png",
    ]
    assert collect_inputs([str(photos / "wide.png"), str(photos / "wide.png")]) == [
        (photos / "wide.png").resolve()
    ]
    assert {p.name for p in collect_inputs(f"{photos}/**/*16.png")} == {"grey16.png"}
    with pytest.raises(ValueError, match="matches no file"):
        collect_inputs(f"{photos}/*.bmp")
    with pytest.raises(ValueError, match="neither a file"):
        collect_inputs(str(photos / "nothing.png"))
    (tmp_path / "readme.txt").write_text("no images")
    with pytest.raises(ValueError, match="holds no image files"):
        collect_inputs(str(tmp_path))


def test_output_names_are_unique():
    files = [Path("/d/a.jpg"), Path("/d/a.png"), Path("/d/sub/b.png")]
    assert output_names(files) == {files[0]: "a_jpg", files[1]: "a_png", files[2]: "sub/b"}


def test_calibration_follows_eval(model):
    names = model.metadata["class_names"]
    assert calibration(model.metadata, names, None, None) == (
        model.metadata["seen"],
        model.metadata["seen_bias"],
    )
    assert calibration(model.metadata, ["cat", "dog"], None, None) == (None, 0.0)  # another vocabulary: none
    assert calibration(model.metadata, ["cat", "dog"], ["dog"], None) == ([1], 0.1)
    assert resolve_seen("cat, 1", ["cat", "dog"]) == [0, 1]
    with pytest.raises(ValueError, match="'cow' is not one of the classes"):
        resolve_seen(["cow"], ["cat", "dog"])
    with pytest.raises(ValueError, match="index 5 is out of range"):
        resolve_seen([5], ["cat", "dog"])


def test_predict_with_an_official_checkpoint_uses_its_calibration(golden_dir, photos, tmp_path):
    official = golden_dir / "official_tiny.pth"
    summary = predict(_compose(tmp_path, f"ckpt_path={official}", f"inputs={photos}/wide.png"))
    assert summary.exit_code == 0 and len(summary.written) == 1
    model = zegclip.load(official)
    meta = model.metadata
    assert meta["seen_bias"] == 0.1 and meta["seen"] == [0, 1, 2, 3]  # the official inductive calibration
    expected = model.predict(photos / "wide.png", seen=meta["seen"], seen_bias=0.1)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "labels" / "wide.png")), expected.label)
    uncalibrated = model.predict(photos / "wide.png")
    assert not np.array_equal(expected.label, uncalibrated.label)  # the offset was applied
