"""The benchmark scripts run (smoke mode: tiny model, nothing measured) and their helpers count
right. The timings themselves are not tested (benchmarks print tables; see README)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import benchlib  # noqa: E402


def run_script(name: str, *args: str, tmp_path: Path, official: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_ALBUMENTATIONS_UPDATE="1")
    if not official:
        env.pop("ZEGCLIP_REF", None)
    return subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / name), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=900,
        check=True,
    )


def test_flop_counts_match_the_vit_b16_arithmetic():
    # ViT-B/16 on a 512x512 crop with 10 prompts: 1,035 tokens, about 215 GFLOP forward per image
    forward = benchlib.vit_step_flops(1, 1035, train=False)
    assert 214e9 < forward < 218e9
    # training (frozen tower): + input-gradient GEMMs (1x linear, 2x attention)
    step = benchlib.vit_step_flops(2, 1035)
    linear, attention = 24 * 768**2 * 1035 * 12 * 2, 4 * 1035**2 * 768 * 12 * 2
    assert step == pytest.approx(2 * linear + 3 * attention)
    # the whole model adds patch embedding, projection and decoder: a few percent
    whole = benchlib.zegclip_step_flops(2, 32, 10, 15)
    assert step < whole < 1.05 * step


def test_peak_rss_sees_an_allocation_after_reset():
    before = benchlib.reset_peak_rss()
    block = np.ones(200 * 2**20 // 8)  # 200 MiB, touched
    peak = benchlib.peak_rss()
    assert peak - before >= 190 * 2**20
    del block


def test_gpu_benchmark_smoke_and_refusal_without_cuda(tmp_path):
    result = run_script(
        "gpu_benchmark.py", "--smoke", "--modes", "fp32", "bf16-mixed", "--scales", "voc", tmp_path=tmp_path
    )
    assert "| voc | fp32 |" in result.stdout and "| voc | bf16-mixed |" in result.stdout
    assert "| VOC-sized image, slide (2 windows) | bf16 |" in result.stdout
    if not __import__("torch").cuda.is_available():
        refused = subprocess.run(
            [sys.executable, str(REPO / "benchmarks" / "gpu_benchmark.py")],
            capture_output=True,
            text=True,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
        )
        assert refused.returncode == 2 and "needs a CUDA GPU" in refused.stderr


def test_data_benchmark_reads_both_datasets_through_the_datamodule(tmp_path):
    out = tmp_path / "data.md"
    run_script("data_benchmark.py", "--images", "4", "--passes", "1", "--out", str(out), tmp_path=tmp_path)
    table = out.read_text()
    assert "| voc | 375x500" in table and "| coco | 480x640" in table
    assert "images/s per worker" in table


def test_train_benchmark_smoke_without_the_official_code(tmp_path):
    out = tmp_path / "train.md"
    run_script("train_benchmark.py", "--smoke", "--out", str(out), tmp_path=tmp_path)
    table = out.read_text()
    assert "official column skipped: ZEGCLIP_REF is not set" in table
    for row in ("| zegclip | fp32 |", "| zegclip | bf16-mixed", "| zegclip + grad checkpointing | fp32 |"):
        assert row in table
    assert "| official |" not in table


def test_inference_benchmark_smoke(tmp_path):
    out = tmp_path / "inference.md"
    run_script("inference_benchmark.py", "--smoke", "--out", str(out), tmp_path=tmp_path)
    table = out.read_text()
    emulated = "" if benchlib.machine()["native_bf16"] else " (emulated: no native bf16)"
    for precision in ("bf16-mixed", "bf16"):  # bf16 rows say where bf16 is emulated
        assert f"| one 512x512 crop, 20 classes, whole mode | zegclip | {precision}{emulated} |" in table
    assert "shapes test set (100 images, 64x64), bundled model | zegclip | fp32" in table


def test_vocabulary_benchmark_smoke(tmp_path):
    """Both paths, crop and sliding window, at C = 300; the chunked labels equal the full path's (the
    agreement column). (Chunked = full at every size: tests/test_model_chunked.py.)"""
    out = tmp_path / "vocabulary.md"
    run_script("vocabulary_benchmark.py", "--smoke", "--no-bf16", "--out", str(out), tmp_path=tmp_path)
    table = out.read_text()
    for c in (300,):
        assert f"| one 512x512 crop, whole mode | {c} | zegclip |" in table
        assert f"| A-847 image 512x683, slide (2 windows) | {c} | zegclip full |" in table
    full_rows = [line for line in table.splitlines() if "| zegclip full |" in line]
    assert len(full_rows) == 2 and all(line.rstrip().endswith("| 100.000% |") for line in full_rows)
    assert "interleaved" in table


def test_result_headers_name_the_cpu_capability_and_torch(tmp_path):
    """Every result file's header names the CPU model, the capability used and the torch version;
    ``--capability avx2`` reruns the script with the lowering settings, and bf16 rows then say
    they are emulated."""
    script = tmp_path / "probe.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(REPO / 'benchmarks')!r})\n"
        "import benchlib\n"
        "code = benchlib.relaunch_with_capability(sys.argv[1], sys.argv[1:])\n"
        "if code is not None:\n"
        "    sys.exit(code)\n"
        "print(benchlib.header('cmd'))\n"
        "print('LABEL', benchlib.precision_label('bf16-mixed'), '|', benchlib.precision_label('fp32'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in benchlib.CAPABILITIES["avx2"]}
    env["PYTHONPATH"] = str(REPO)
    torch_version = __import__("torch").__version__
    for capability in ("native", "avx2"):
        run = subprocess.run(
            [sys.executable, str(script), capability], capture_output=True, text=True, env=env, check=True
        )
        header = run.stdout
        assert f"CPU: {benchlib.cpu_name()}" in header and f"torch {torch_version}" in header
        if capability == "avx2":
            assert (
                "capability AVX2 (lowered by ONEDNN_MAX_CPU_ISA=AVX2" in header and "no native bf16" in header
            )
            assert "LABEL bf16-mixed (emulated: no native bf16) | fp32" in header
        else:
            from zegclip.model.precision import cpu_info

            assert f"capability {cpu_info().capability}," in header
            native = cpu_info().native_bf16
            assert ("LABEL bf16-mixed | fp32" in header) == native
