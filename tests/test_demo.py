"""The web demo's pieces, without a browser (tests/test_demo_browser.py drives the page)."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

import zegclip
from zegclip.apps.demo import (
    Segmenter,
    _argv_with_keys,
    build_demo,
    default_calibration,
    shapes_examples,
    shares_table,
    split_names,
)
from zegclip.model.prediction import Prediction


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return zegclip.load("shapes")


def test_split_names():
    assert split_names(" cat, dog,, grass ,") == ["cat", "dog", "grass"]
    assert split_names("") == [] and split_names(None) == []


def test_shares_table_escapes_names_and_orders_by_share():
    label = np.array([[0, 1, 1, 1]])
    pred = Prediction(image=np.zeros((1, 4, 3), np.uint8), label=label, class_names=["<b>cat</b>", "dog"])
    table = shares_table(pred)
    assert table.index('data-class="dog"') < table.index("&lt;b&gt;cat&lt;/b&gt;") and "<b>cat" not in table
    assert 'data-share="0.750000"' in table and "75.00%" in table


def test_segmenter_matches_predict_and_reports_bad_input(model, tmp_path):
    image = np.asarray(Image.new("RGB", (80, 64), (200, 30, 30)))
    Image.fromarray(image).save(tmp_path / "red.png")
    segment = Segmenter(model)
    overlay, table = segment(
        str(tmp_path / "red.png"), "red circle, blue square", "blue square", 0.2, "slide"
    )
    expected = model.predict(tmp_path / "red.png", ["red circle", "blue square"], seen=[1], seen_bias=0.2)
    assert np.array_equal(np.asarray(overlay), np.asarray(expected.overlay()))
    assert table == shares_table(expected)
    for args, message in [
        ((None, "cat", "", 0.1, "slide"), "Upload an image"),
        ((str(tmp_path / "red.png"), " , ", "", 0.1, "slide"), "at least one class"),
        ((str(tmp_path / "red.png"), "cat, dog", "cow", 0.1, "slide"), "'cow' is not one of the classes"),
    ]:
        with pytest.raises(gr.Error, match=message):
            segment(*args)
    (tmp_path / "bad.png").write_text("no image")
    with pytest.raises(gr.Error, match="bad.png"):
        segment(str(tmp_path / "bad.png"), "cat", "", 0.1, "slide")


def test_demo_builds_with_examples(model, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))  # Gradio caches the examples there
    examples = shapes_examples(tmp_path, count=2)
    assert [p.name for p in examples] == ["shapes_0.png", "shapes_1.png"]
    assert Image.open(examples[0]).size == (256, 256)
    demo = build_demo(model, examples)
    assert isinstance(demo, gr.Blocks)
    assert default_calibration(model) == ("", 0.1)  # the shapes model has no seen offset


def test_key_value_arguments():
    assert _argv_with_keys(["ckpt_path=a.pth", "--port", "1"]) == ["--ckpt_path", "a.pth", "--port", "1"]
