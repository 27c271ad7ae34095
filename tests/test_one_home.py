"""One home per job (issue 22): atomic writes, image reading, normalisation, calibration, metric
names. Each job is checked where it lives and by a scan of ``zegclip/`` that fails when a second copy
appears elsewhere."""

from __future__ import annotations

import ast
import re
import threading
from pathlib import Path

import albumentations as A
import numpy as np
import pytest
import torch

from zegclip.common import atomic
from zegclip.common.constants import IMAGENET_MEAN, IMAGENET_STD
from zegclip.common.images import normalize, read_image, resize_short_side
from zegclip.model.inference import SEEN_BIAS, calibration, default_seen_bias, own_seen_bias

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "zegclip"
ATOMIC = PACKAGE / "common" / "atomic.py"


def sources(*roots: Path) -> dict[Path, ast.Module]:
    return {p: ast.parse(p.read_text()) for root in roots for p in sorted(root.rglob("*.py"))}


def dotted(node: ast.AST) -> str:
    """``os.path.join`` for an attribute chain, ``""`` otherwise."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def code_constants(tree: ast.Module) -> list[ast.Constant]:
    """String and number constants that are not docstrings."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    # attribute docstrings (a string statement after an assignment) count as docstrings too
    docstrings |= {
        id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)
    }
    return [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and id(n) not in docstrings]


# -- 1. atomic writes ------------------------------------------------------------------------------
TEMP_NAME = re.compile(r"\.(tmp|temp|part|partial)\b")
IDENTITY_CALLS = ("getpid", "get_ident", "get_native_id", "token_hex", "uuid4", "mkstemp")


def atomic_write_copies(tree: ast.Module) -> list[str]:
    """What in ``tree`` writes a file the way only :mod:`zegclip.common.atomic` may: a rename into
    place, an fsync, a temporary file, a temporary name."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = dotted(node.func)
            attr = node.func.attr if isinstance(node.func, ast.Attribute) else ""
            if name in ("os.replace", "os.rename", "os.renames", "os.link", "shutil.move") or attr in (
                "fsync",
                "rename",
            ):
                found.append(f"line {node.lineno}: {name or attr}()")
            elif (
                attr == "replace" and len(node.args) == 1 and not node.keywords
            ):  # Path.replace (str.replace takes 2)
                found.append(f"line {node.lineno}: .replace(target)")
            elif name.startswith("tempfile.") and name != "tempfile.gettempdir":
                found.append(f"line {node.lineno}: {name}()")
        elif isinstance(node, ast.ImportFrom) and node.module == "tempfile":
            found.append(f"line {node.lineno}: from tempfile import ...")
        elif isinstance(node, ast.JoinedStr):  # f".{name}.{os.getpid()}..." : a temporary name
            literal = "".join(
                v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)
            )
            calls = {dotted(c.func).rsplit(".", 1)[-1] for c in ast.walk(node) if isinstance(c, ast.Call)}
            if (calls & set(IDENTITY_CALLS) and "." in literal) or TEMP_NAME.search(literal):
                found.append(f"line {node.lineno}: temporary name f-string")
    found += [
        f"line {c.lineno}: {c.value!r}"
        for c in code_constants(tree)
        if isinstance(c.value, str) and TEMP_NAME.search(c.value)
    ]
    return found


def test_only_common_atomic_renames_fsyncs_or_names_temporary_files():
    bad = {
        str(p.relative_to(REPO)): found
        for p, tree in sources(PACKAGE).items()
        if p != ATOMIC and (found := atomic_write_copies(tree))
    }
    assert not bad, f"atomic writing outside zegclip/common/atomic.py (use write_file / write_text): {bad}"


def test_the_scan_finds_each_kind_of_copy():
    copies = {
        "os.replace(tmp, path)": "os.replace",
        "Path(tmp).rename(path)": "rename",
        "Path(tmp).replace(path)": "replace",
        "os.fsync(f.fileno())": "fsync",
        "tempfile.NamedTemporaryFile(dir=d)": "NamedTemporaryFile",
        "name = f'.{path.name}.{os.getpid()}'": "temporary name",
        "tmp = path.with_suffix('.tmp')": ".tmp",
        "part = str(path) + '.partial'": ".partial",
    }
    for code, what in copies.items():
        assert any(what in f for f in atomic_write_copies(ast.parse(code))), code
    assert not atomic_write_copies(
        ast.parse("s = 'a.b'.replace('.', '/')\nd = tempfile.gettempdir()\nrun = f'{x}_{token_hex(3)}'")
    )


WRITERS = {
    "text-embedding cache": "model/text.py",
    "model checkpoint": "model/checkpoint.py",
    "Lightning checkpoint": "training/checkpointing.py",
    "run.json": "engine/run_folder.py",
    "metrics.json": "engine/results.py",
    "verify cache": "data/verify.py",
    "preparation": "data/prepare.py",
    "open-vocabulary preparation": "data/prepare_openvocab.py",
}


@pytest.mark.parametrize("module", WRITERS.values(), ids=list(WRITERS))
def test_each_writer_writes_through_common_atomic(module):
    tree = ast.parse((PACKAGE / module).read_text())
    helpers = {
        a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and n.module == "zegclip.common.atomic"
        for a in n.names
    }
    helpers |= {
        a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and n.module == "zegclip.data.prepare"
        for a in n.names
        if a.name.startswith("write_")
    }  # prepare_openvocab writes with prepare's writers
    called = {dotted(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    assert helpers & called, f"{module} writes no file through zegclip.common.atomic"


def test_writers_use_a_temporary_name_unique_per_call(monkeypatch, tmp_path, tiny_eval_model):
    """The writers users meet first, run for real: each goes through ``atomic.temp_path``."""
    from zegclip.data.prepare import write_label_png
    from zegclip.engine.run_folder import claim
    from zegclip.model.checkpoint import save
    from zegclip.training.checkpointing import AtomicCheckpointIO

    written: list[Path] = []
    real = atomic.temp_path
    monkeypatch.setattr(atomic, "temp_path", lambda path: written.append(path) or real(path))
    save(tiny_eval_model, tmp_path / "model.ckpt")
    AtomicCheckpointIO().save_checkpoint({"state_dict": {}}, tmp_path / "last.ckpt")
    claim(tmp_path / "run", "train")
    write_label_png(tmp_path / "label.png", np.zeros((4, 4), np.uint8))
    encoder = tiny_eval_model.text_encoder
    monkeypatch.setattr(encoder, "cache_dir", tmp_path / "text")
    encoder.class_embeddings(["cat", "dog"], "single")
    names = [p.relative_to(tmp_path).as_posix() for p in written]
    assert names[:4] == ["model.ckpt", "last.ckpt", "run/run.json", "label.png"]
    assert len(names) == 5 and names[4].startswith("text/text_")
    assert not list(tmp_path.rglob("*.tmp"))


def test_temporary_names_differ_across_threads_and_calls(tmp_path):
    target = tmp_path / "file.json"
    names: list[Path] = []
    threads = [threading.Thread(target=lambda: names.append(atomic.temp_path(target))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(names)) == 8 and all(n.parent == tmp_path and n.name.endswith(".tmp") for n in names)
    pid, thread = atomic.temp_path(target).name.removeprefix(".file.json.").split("-")[:2]
    assert int(pid) > 0 and int(thread) == threading.get_native_id()


def test_concurrent_writers_of_one_file_leave_one_complete_file(tmp_path):
    target = tmp_path / "shared.txt"
    texts = [str(i) * 100_000 for i in range(8)]
    threads = [threading.Thread(target=atomic.write_text, args=(target, t)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert target.read_text() in texts and not list(tmp_path.glob(".*.tmp"))


def test_write_file_fsyncs_the_file_and_its_folder(monkeypatch, tmp_path):
    synced: list[str] = []
    real = atomic.os.fsync

    def fsync(fd: int) -> None:
        synced.append("folder" if Path(f"/proc/self/fd/{fd}").resolve().is_dir() else "file")
        real(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    atomic.write_text(tmp_path / "a.json", "{}")
    assert synced == ["file", "folder"]
    synced.clear()
    atomic.write_text(tmp_path / "b.png", "x", fsync=False)  # thousands of small prepared files
    assert synced == []


# -- 2. one image reader, one normalisation ---------------------------------------------------------
def test_one_image_reader_and_one_image_read_error():
    bad = {}
    classes = []
    for path, tree in sources(PACKAGE).items():
        rel = str(path.relative_to(REPO))
        calls = {dotted(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
        opens = calls & {"Image.open", "PIL.Image.open", "cv2.imread", "imageio.imread", "iio.imread"}
        if opens and rel != "zegclip/common/images.py":
            bad[rel] = sorted(opens)
        classes += [rel for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "ImageReadError"]
        defs = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        for name in ("read_image", "short_side_size", "split_names", "resolve_seen", "calibration"):
            if name in defs:
                classes.append(f"{rel}: def {name}")
    assert not bad, f"images decoded outside zegclip/common/images.py: {bad}"
    assert sorted(classes) == sorted(
        [
            "zegclip/common/errors.py",
            "zegclip/common/images.py: def read_image",
            "zegclip/common/images.py: def short_side_size",
            "zegclip/common/class_names.py: def split_names",
            "zegclip/common/class_names.py: def resolve_seen",
            "zegclip/model/inference.py: def calibration",
        ]
    )


def test_the_datasets_and_the_predictor_share_the_reader_and_its_error(tmp_path):
    from zegclip import data
    from zegclip.common.errors import ImageReadError
    from zegclip.model import preprocess

    assert data.ImageReadError is ImageReadError
    (tmp_path / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 20)
    for read in (read_image, data.read_sample_image):
        with pytest.raises(ImageReadError, match="cannot decode image .*cut.png"):
            read(tmp_path / "cut.png")
    assert not hasattr(preprocess, "read_image") and not hasattr(preprocess, "ImageReadError")


def test_normalisation_is_albumentations_bit_for_bit():
    """Every value of every channel: the table is exhaustive, so any image gives the same bits."""
    grid = np.stack(np.meshgrid(np.arange(256), np.arange(256), indexing="ij"), -1)
    image = np.concatenate([grid, grid[..., :1].transpose(1, 0, 2)], -1).astype(np.uint8)
    reference = A.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD, max_pixel_value=1.0)(image=image)["image"]
    ours = normalize(image)
    assert ours.dtype == np.float32 and np.array_equal(ours.view(np.uint32), reference.view(np.uint32))


def test_prediction_preprocessing_equals_the_evaluation_transform_bit_for_bit():
    from zegclip.data.transforms import build_test_transform
    from zegclip.model.preprocess import normalize as to_tensor

    image = np.random.default_rng(3).integers(0, 256, (240, 321, 3), dtype=np.uint8)
    evaluated = build_test_transform(short_side=64)(image, np.zeros((240, 321), np.uint8))["image"]
    predicted = to_tensor(resize_short_side(image, 64))
    assert tuple(predicted.shape) == (3, 64, 86)
    assert torch.equal(predicted, torch.from_numpy(evaluated).permute(2, 0, 1))


# -- 3. one calibration rule -----------------------------------------------------------------------
def test_the_calibration_rule():
    meta = {"class_names": ["cat", "dog", "cow"], "seen": [0, 1], "seen_bias": 0.25, "setting": "inductive"}
    assert calibration(meta, ["cat", "dog", "cow"]) == ([0, 1], 0.25)  # its own on its own vocabulary
    assert calibration(meta, ["cat", "dog", "cow"], seen_bias=0.05) == ([0, 1], 0.05)
    assert calibration(meta, ["cat", "dog"]) == (None, 0.0)  # another vocabulary: none
    assert calibration(meta, ["cat", "dog"], seen="dog") == ([1], SEEN_BIAS)  # configured: the paper's offset
    assert own_seen_bias(meta, ["cow"]) == 0.0
    old = {"class_names": ["cat"], "seen": [0], "setting": "transductive"}  # a file without seen_bias
    assert own_seen_bias(old, ["cat"]) == default_seen_bias("transductive") == 0.0
    assert own_seen_bias(old, ["cat"], setting="inductive") == SEEN_BIAS


def test_no_second_calibration_rule():
    """The checkpoint's seen_bias is read, and the paper's 0.1 written, in zegclip/model/inference.py only."""
    bad = []
    for path, tree in sources(PACKAGE).items():
        if path == PACKAGE / "model" / "inference.py":
            continue
        text = path.read_text()
        lines = text.splitlines()
        tenths = {id(c) for c in code_constants(tree) if c.value == 0.1}
        for scope in [
            tree,
            *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))),
        ]:
            where = scope.name if isinstance(scope, ast.FunctionDef) else ""
            for c in ast.walk(scope):  # 0.1 in a function about calibration, or on a line about it
                if id(c) in tenths and re.search(r"seen|calibrat", where + lines[c.lineno - 1]):
                    bad.append(f"{path.relative_to(REPO)}:{c.lineno}")
        bad += [
            f"{path.relative_to(REPO)}:{i}"
            for i, line in enumerate(lines, 1)
            if re.search(r"meta\w*(\.get\(|\[)[\"']seen_bias", line)
        ]
    assert not bad, f"calibration outside zegclip.model.inference.calibration / own_seen_bias: {bad}"


# -- 4. one list of metric keys and labels ---------------------------------------------------------
def test_metric_keys_and_labels_live_in_common_metric_names():
    from zegclip.common.metric_names import LABELS

    home = PACKAGE / "common" / "metric_names.py"
    bad = []
    for path, tree in sources(PACKAGE, REPO / "benchmarks").items():
        if path == home:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                keys = [e.value for e in node.elts if isinstance(e, ast.Constant)]
                if len(set(keys) & set(LABELS)) >= 2:
                    bad.append(f"{path.relative_to(REPO)}:{node.lineno} {keys}")
        labels = {v for k, v in LABELS.items() if k != v}  # a label as a value or as a table column
        bad += [
            f"{path.relative_to(REPO)}:{c.lineno} {c.value!r}"
            for c in code_constants(tree)
            if isinstance(c.value, str)
            and any(c.value == label or f" {label} |" in c.value for label in labels)
        ]
    assert not bad, f"metric keys or labels written out again (import zegclip.common.metric_names): {bad}"


def test_console_line_and_summary_use_the_shared_names():
    from zegclip.common.metric_names import LABELS, SUMMARY_KEYS, VALIDATION_KEYS
    from zegclip.training import module
    from zegclip.training.console import ValidationReport

    assert module.SUMMARY_KEYS is SUMMARY_KEYS
    assert tuple((LABELS[k], f"val/{k}") for k in VALIDATION_KEYS) == ValidationReport.KEYS
