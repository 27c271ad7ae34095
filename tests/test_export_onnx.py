"""`python -m zegclip.export --onnx`: the ONNX graph matches PyTorch's scores (onnxruntime)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import zegclip
from zegclip.export import main as export_main

REPO = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4  # max |onnxruntime - PyTorch| on calibrated scores in [-0.3, 1] (measured: ~1e-6)


def test_onnx_export_matches_pytorch(tmp_path):
    import onnxruntime as ort  # the dev extra installs it
    out = tmp_path / "shapes.onnx"
    classes = ["red circle", "blue square", "yellow star", "green heart"]
    assert export_main(["shapes", "--onnx", str(out), "--classes", ",".join(classes), "--seen", "blue square,0",
                        "--seen-bias", "0.3"]) == 0  # fmt: skip
    assert out.is_file() and not (tmp_path / "shapes.onnx.data").exists()  # one file

    model = zegclip.load("shapes")
    embeddings = model.class_embeddings(classes, model.metadata["templates"])
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["class_names"]) == classes and json.loads(meta["seen"]) == [1, 0]
    assert float(meta["seen_bias"]) == 0.3 and int(meta["crop"]) == 64
    generator = torch.Generator().manual_seed(0)
    for shape in [(1, 3, 64, 64), (3, 3, 64, 96), (1, 3, 100, 72)]:  # batch, height and width are dynamic
        x = torch.randn(*shape, generator=generator)
        with torch.no_grad():
            expected = model.scores(x, embeddings, [1, 0], 0.3).numpy()
        got = session.run(["scores"], {"pixel_values": x.numpy()})[0]
        assert got.shape == expected.shape == (shape[0], 4, *shape[2:])
        assert np.abs(got - expected).max() < TOLERANCE, shape
        assert (got.argmax(1) == expected.argmax(1)).mean() > 0.999


def test_export_cli_errors(tmp_path):
    with pytest.raises(SystemExit):
        export_main(["shapes"])  # neither OUTPUT nor --onnx
    with pytest.raises(SystemExit):
        export_main(["shapes", str(tmp_path / "a.pt"), "--onnx", str(tmp_path / "a.onnx")])
    with pytest.raises(SystemExit):
        export_main(["shapes", "--onnx", str(tmp_path / "a.onnx"), "--classes", "cat,dog", "--seen", "cow"])


def test_small_export_accepts_the_bundled_name(tmp_path):
    assert export_main(["shapes", str(tmp_path / "copy.pt")]) == 0
    assert zegclip.load(tmp_path / "copy.pt").metadata["class_names"] == zegclip.load("shapes").metadata["class_names"]


@pytest.mark.parametrize("module", ["zegclip.export", "zegclip.convert", "zegclip.data.prepare", "zegclip.pretrain_clip"])
def test_command_line_tools_have_help(module, capsys):
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: python -m " + module) and len(text.splitlines()) > 5


def test_export_help_runs_as_a_command():
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_ALBUMENTATIONS_UPDATE": "1"}
    run = subprocess.run([sys.executable, "-m", "zegclip.export", "--help"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "--onnx" in run.stdout, run.stderr
