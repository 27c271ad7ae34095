"""`python -m zegclip.export --onnx`: the ONNX graph matches PyTorch's scores (onnxruntime)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import zegclip
from zegclip.apps.export import main as export_main

TOLERANCE = 1e-4  # max |onnxruntime - PyTorch| on calibrated scores in [-0.3, 1] (measured: ~1e-6)


def test_onnx_export_matches_pytorch(tmp_path):
    import onnxruntime as ort  # the dev extra installs it

    out = tmp_path / "shapes.onnx"
    classes = ["red circle", "blue square", "yellow star", "green heart"]
    assert (
        export_main(
            [
                "shapes",
                "--onnx",
                str(out),
                "--classes",
                ",".join(classes),
                "--seen",
                "blue square,0",
                "--seen-bias",
                "0.3",
            ]
        )
        == 0
    )
    assert out.is_file() and not (tmp_path / "shapes.onnx.data").exists()  # one file

    model = zegclip.load("shapes", precision="fp32")  # the graph is fp32
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


def export_error(capsys, argv: list[str]) -> str:
    """The one-line argparse error ``python -m zegclip.export ARGV`` ends with (exit code 2)."""
    with pytest.raises(SystemExit) as exit_info:
        export_main(argv)
    assert exit_info.value.code == 2, exit_info.value.code  # a usage error, not success (0) or a crash
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m zegclip.export")
    return err.strip().splitlines()[-1]


def test_export_cli_errors(tmp_path, capsys):
    onnx = tmp_path / "a.onnx"
    assert export_error(capsys, ["shapes"]) == (
        "python -m zegclip.export: error: give OUTPUT (a small zegclip file) or --onnx OUT.onnx"
    )
    assert export_error(capsys, ["shapes", str(tmp_path / "a.pt"), "--onnx", str(onnx)]) == (
        "python -m zegclip.export: error: --onnx writes one file: give no "
        "OUTPUT and no --include-clip with it"
    )
    line = export_error(capsys, ["shapes", "--onnx", str(onnx), "--classes", "cat,dog", "--seen", "cow"])
    assert line.startswith("python -m zegclip.export: error: ") and "'cow'" in line and "'cat', 'dog'" in line
    existing = tmp_path / "old.pt"
    existing.write_bytes(b"keep me")
    assert export_error(capsys, ["shapes", str(existing)]) == (
        f"python -m zegclip.export: error: {existing} exists; pass --overwrite to replace it"
    )
    assert existing.read_bytes() == b"keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["old.pt"]


def test_small_export_accepts_the_bundled_name(tmp_path):
    assert export_main(["shapes", str(tmp_path / "copy.pt")]) == 0
    assert (
        zegclip.load(tmp_path / "copy.pt").metadata["class_names"]
        == zegclip.load("shapes").metadata["class_names"]
    )
