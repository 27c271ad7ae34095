"""``precision=auto`` and the bf16 warning, on every machine.

Both branches run everywhere: a child process started with ``ATEN_CPU_CAPABILITY=avx2
ONEDNN_MAX_CPU_ISA=AVX2`` uses no more than AVX2 whatever the CPU has (the branch "no native
bf16"), and the decision table for CPUs with bf16 instructions is checked on stated CPU facts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import zegclip
from zegclip.model import precision as P

REPO = Path(__file__).resolve().parents[1]
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
WARNING = "bf16 on a CPU without native bf16"


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "PYTHONWARNINGS")
    }
    return {**env, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **extra}


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=_env(**env), capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def _warning_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if WARNING in line]


# ----------------------------------------------------------------------------- the decision table


@pytest.fixture()
def cpu(monkeypatch):
    """``cpu(flags, aten="AVX512", **env)``: the CPU facts torch would report, for one decision."""

    def make(flags: set[str], aten: str = "AVX512", **env: str) -> P.CPUInfo:
        for var in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY"):
            monkeypatch.delenv(var, raising=False)
        for var, value in env.items():
            monkeypatch.setenv(var, value)
        monkeypatch.setattr(P, "_cpu_capabilities", lambda: dict.fromkeys(flags, True))
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: aten)
        P.cpu_info.cache_clear()
        return P.cpu_info()

    yield make
    P.cpu_info.cache_clear()


AVX512 = {"avx2", "avx512_f", "avx512_bw", "avx512_vl", "avx512_dq"}
BF16 = AVX512 | {"avx512_bf16"}


@pytest.mark.parametrize(
    ("flags", "aten", "env", "capability", "native"),
    [
        (BF16 | {"amx_bf16"}, "AVX512", {}, "AMX", True),  # Sapphire Rapids
        (BF16, "AVX512", {}, "AVX-512 BF16", True),  # Zen 4, Cooper Lake
        (AVX512, "AVX512", {}, "AVX-512", False),  # Skylake / Cascade Lake: bf16 emulated
        ({"avx2"}, "AVX2", {}, "AVX2", False),  # Zen 2/3, most client CPUs
        (set(), "DEFAULT", {}, "below AVX2", False),
        (BF16, "AVX512", {"ONEDNN_MAX_CPU_ISA": "AVX2"}, "AVX2", False),
        (BF16, "AVX2", {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}, "AVX2", False),
        (BF16, "AVX512", {"ONEDNN_MAX_CPU_ISA": "avx512_core"}, "AVX-512", False),
        (BF16, "AVX512", {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, "AVX-512 BF16", True),
        (BF16 | {"amx_bf16"}, "AVX512", {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, "AVX-512 BF16", True),
        (BF16, "AVX512", {"DNNL_MAX_CPU_ISA": "AVX2"}, "AVX2", False),  # the older name
        (BF16, "AVX512", {"ONEDNN_MAX_CPU_ISA": "ALL", "DNNL_MAX_CPU_ISA": "AVX2"}, "AVX-512 BF16", True),
        ({"avx2"}, "AVX2", {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}, "AVX2", False),  # a limit never raises
        # ATen's kernels alone at AVX2: bf16 matrix products still native (measured faster than fp32)
        (BF16, "AVX2", {"ATEN_CPU_CAPABILITY": "avx2"}, "AVX-512 BF16", True),
    ],
)
def test_auto_picks_bf16_only_where_the_cpu_computes_it_natively(cpu, flags, aten, env, capability, native):
    info = cpu(flags, aten, **env)
    assert (info.capability, info.native_bf16) == (capability, native)
    choice = P.choose("auto", "cpu")
    assert choice.precision == ("bf16-mixed" if native else "fp32")
    assert choice.dtype == torch.float32 and choice.autocast_dtype == (torch.bfloat16 if native else None)
    assert choice.reason.startswith("auto: ") and capability in choice.reason
    assert P.choose_trainer_precision("auto", "cpu").precision == ("bf16-mixed" if native else "32-true")
    lowered = info.capability != info.hardware
    assert bool(info.limits) == lowered and ("lowered by" in info.describe()) == lowered
    assert ("ATen kernels AVX2" in info.describe()) == ("ATEN_CPU_CAPABILITY" in env)


def test_explicit_precisions_and_errors(cpu):
    cpu(BF16)
    assert P.choose("fp32").precision == "fp32" and P.choose(torch.float16).precision == "fp16"
    assert (
        P.choose("bf16").dtype == torch.bfloat16 and P.choose("bf16").autocast_dtype is None
    )  # weights cast
    assert (
        P.choose("bf16-mixed").dtype == torch.float32
        and P.choose("bf16-mixed").autocast_dtype == torch.bfloat16
    )
    assert P.choose(None).dtype is None  # as saved
    same = P.choose("auto")
    assert P.choose(same) is same  # a choice already made passes through
    with pytest.raises(ValueError, match=r"precision must be one of \['auto', .*got 'fp8'"):
        P.choose("fp8")
    assert P.choose_trainer_precision("16-mixed", "cpu").precision == "16-mixed"  # Lightning's names kept


def test_the_warning_is_one_line_once_and_names_the_slowdown(cpu):
    cpu({"avx2"}, "AVX2")
    P._WARNED.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert P.choose("bf16").precision == "bf16"  # a warning, not a refusal: bf16 still halves the memory
        P.choose("bf16")
        P.choose("bf16-mixed")
        P.choose_trainer_precision("bf16-mixed", "cpu")
        P.choose("fp32")
        P.choose("auto")
        P.choose("bf16", "cuda:0")  # not a CPU: nothing to say
    messages = [str(w.message) for w in caught]
    assert [w.category for w in caught] == [P.SlowPrecisionWarning] * 3  # once per request
    assert "(precision=bf16;" in messages[0] and "(precision=bf16-mixed;" in messages[1]
    assert "(trainer.precision=bf16-mixed;" in messages[2]
    for message in messages:
        assert message.startswith(WARNING) and "\n" not in message
        assert (
            f"about {P.EMULATED_BF16_SLOWDOWN['AVX2']:g}x slower than fp32" in message and "AVX2" in message
        )
        assert "precision=auto picks fp32" in message and "PYTHONWARNINGS='ignore:bf16 on a CPU'" in message


def test_accelerator_device():
    """The device a trainer's accelerator setting runs on, which the eval and train choices use."""
    assert P.accelerator_device("cpu") == "cpu"
    assert P.accelerator_device("gpu") == P.accelerator_device("cuda") == "cuda"
    found = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert P.accelerator_device("auto") == P.accelerator_device(None) == found


# ----------------------------------------------------------------------------- real processes


def test_this_machine_follows_what_torch_reports():
    """Without lowering: auto gives bf16 exactly when torch's cpuinfo reports bf16 instructions."""
    run = _python(
        "import json, torch, zegclip\n"
        "m = zegclip.load('shapes')\n"
        "caps = torch.cpu.get_capabilities() if hasattr(torch.cpu, 'get_capabilities') else {}\n"
        "print(json.dumps({'choice': m.precision.to_dict(), 'dtype': str(next(m.parameters()).dtype),\n"
        "                  'bf16': bool(caps.get('avx512_bf16') or caps.get('amx_bf16'))}))"
    )
    out = json.loads(run.stdout.splitlines()[-1])
    assert out["choice"]["precision"] == ("bf16-mixed" if out["bf16"] else "fp32")
    assert out["choice"]["native_bf16"] == out["bf16"] and out["dtype"] == "torch.float32"
    assert out["choice"]["requested"] == "auto" and out["choice"]["torch"] == torch.__version__
    assert not _warning_lines(run.stderr)


def test_lowered_cpu_auto_is_fp32_and_bf16_warns_once_in_one_line():
    code = (
        "import json, torch, zegclip\n"
        "from zegclip.model.precision import choose_trainer_precision\n"
        "auto = zegclip.load('shapes')\n"
        "for _ in range(2):\n"
        "    bf16 = zegclip.load('shapes', precision='bf16')\n"
        "choose_trainer_precision('bf16-mixed', 'cpu')\n"
        "print(json.dumps({'auto': auto.precision.to_dict(), "
        "'auto_dtype': str(next(auto.parameters()).dtype),\n"
        "                  'bf16_dtype': str(next(bf16.parameters()).dtype)}))"
    )
    run = _python(code, **AVX2)
    out = json.loads(run.stdout.splitlines()[-1])
    assert out["auto"]["precision"] == "fp32" and out["auto_dtype"] == "torch.float32"
    assert (
        out["auto"]["capability"] == "AVX2" and "ONEDNN_MAX_CPU_ISA=AVX2" in out["auto"]["capability_limits"]
    )
    assert out["bf16_dtype"] == "torch.bfloat16"  # still honoured
    lines = _warning_lines(run.stderr)
    assert len(lines) == 2, run.stderr  # precision=bf16 once (two loads), trainer.precision once
    assert "precision=bf16;" in lines[0] and "trainer.precision=bf16-mixed;" in lines[1]
    assert all("slower than fp32" in line for line in lines)
    stderr = run.stderr.splitlines()
    for line in lines:  # one line each: no source line printed under it
        after = stderr[stderr.index(line) + 1 :]
        assert not after or not after[0].startswith(" "), run.stderr
    # the silencing the message names works
    quiet = _python(code, **AVX2, PYTHONWARNINGS="ignore:bf16 on a CPU")
    assert not _warning_lines(quiet.stderr)


# ----------------------------------------------------------------------------- entry points


def _shapes_image(folder: Path) -> Path:
    from PIL import Image

    from zegclip.data.shapes import ShapesWorld

    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(ShapesWorld("compositional", seed=5).sample(0)[0]).save(folder / "a.png")
    return folder / "a.png"


@pytest.mark.parametrize("precision", [None, "bf16"])
def test_predict_command_on_a_cpu_without_native_bf16(tmp_path, precision):
    image = _shapes_image(tmp_path / "in")
    out = tmp_path / "run"
    args = [f"inputs={image}", f"hydra.run.dir={out}", *([f"precision={precision}"] if precision else [])]
    run = subprocess.run(
        [sys.executable, "predict.py", *args],
        cwd=REPO,
        env=_env(**AVX2),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    record = json.loads((out / "predictions.json").read_text().splitlines()[0])["precision"]
    if precision is None:  # the default, auto
        assert (
            record["requested"] == "auto" and record["precision"] == "fp32" and record["capability"] == "AVX2"
        )
        assert not _warning_lines(run.stdout + run.stderr)
        assert "precision: fp32 (auto: the CPU has no native bf16" in run.stdout
    else:
        assert record["requested"] == "bf16" and record["precision"] == "bf16"
        assert len(_warning_lines(run.stdout + run.stderr)) == 1


def test_eval_command_on_a_cpu_without_native_bf16(tmp_path):
    out = tmp_path / "run"
    args = [
        "precision=bf16",
        "dataset.layout.test_size=50",
        f"hydra.run.dir={out}",
        f"paths.log_dir={tmp_path}",
        "trainer=cpu",
    ]
    run = subprocess.run(
        [sys.executable, "eval.py", *args],
        cwd=REPO,
        env=_env(**AVX2),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(_warning_lines(run.stdout + run.stderr)) == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["precision"]["requested"] == "bf16" and metrics["precision"]["precision"] == "bf16"
    assert metrics["precision"]["capability"] == "AVX2" and metrics["precision"]["native_bf16"] is False
    assert 0 < metrics["mIoU"] <= 1


def test_eval_auto_is_recorded(tmp_path):
    from hydra_compose import compose_config

    from zegclip.engine.evaluate import evaluate

    cfg = compose_config("eval", ["dataset.layout.test_size=50", "trainer=cpu"], tmp_path)
    evaluate(cfg)
    record = json.loads((tmp_path / "metrics.json").read_text())["precision"]
    native, _ = P.native_bf16("cpu")
    assert record["requested"] == "auto" and record["precision"] == ("bf16-mixed" if native else "fp32")


def test_python_api_default_is_auto():
    model = zegclip.load("shapes")
    native, _ = P.native_bf16("cpu")
    assert model.precision.requested == "auto" and model.precision.precision == (
        "bf16-mixed" if native else "fp32"
    )
    assert next(model.parameters()).dtype == torch.float32
    assert next(zegclip.load("shapes", precision="fp32").parameters()).dtype == torch.float32
    assert next(zegclip.load("shapes", precision=None).parameters()).dtype == torch.float32  # as saved


def test_export_keeps_fp32_and_refuses_a_bf16_onnx(tmp_path, capsys):
    from zegclip.apps.export import main as export_main

    assert export_main(["shapes", str(tmp_path / "fp32.pt")]) == 0
    assert "precision: fp32 (auto: the file keeps fp32 weights" in capsys.readouterr().out
    assert export_main(["shapes", str(tmp_path / "bf16.pt"), "--precision", "bf16", "--include-clip"]) == 0
    state = torch.load(tmp_path / "bf16.pt", weights_only=True)
    assert {v.dtype for v in state["state_dict"].values() if v.is_floating_point()} == {torch.bfloat16}
    assert state["metadata"]["weights_precision"] == "bf16"
    with pytest.raises(SystemExit) as err:
        export_main(["shapes", "--onnx", str(tmp_path / "m.onnx"), "--precision", "bf16"])
    assert err.value.code == 2 and "the ONNX graph is float32" in capsys.readouterr().err


def test_bf16_mixed_inference_runs_bf16_products_and_keeps_fp32_scores():
    """What auto picks where bf16 is native: bf16 matrix products under autocast, fp32 weights,
    fp32 scores; the labels of the fp32 model on nearly every pixel."""
    from zegclip.data.shapes import ShapesWorld
    from zegclip.model.preprocess import normalize as normalize_image

    fp32, mixed = zegclip.load("shapes", precision="fp32"), zegclip.load("shapes", precision="bf16-mixed")
    seen = []
    hook = mixed.decoder.register_forward_hook(lambda module, args, out: seen.append(out[1][-1].dtype))
    world = ShapesWorld("compositional", seed=31)
    x = torch.stack([normalize_image(world.sample(i)[0]) for i in range(8)])
    names = fp32.metadata["class_names"]
    ref, got = fp32.segment(x, names, mode="slide"), mixed.segment(x, names, mode="slide")
    hook.remove()
    assert seen and all(
        dtype == torch.bfloat16 for dtype in seen
    )  # the decoder's logits came out of bf16 GEMMs
    assert next(mixed.parameters()).dtype == torch.float32 and got.dtype == torch.float32
    assert 0 < (got - ref).abs().max() < 0.05
    assert (got.argmax(1) == ref.argmax(1)).float().mean() > 0.99


def test_trainer_precision_auto_is_resolved_and_recorded(tmp_path, monkeypatch):
    """``trainer.precision=auto``: Lightning gets bf16-mixed where bf16 is native, else 32-true."""
    import lightning as L
    from hydra_compose import compose_config

    from zegclip.engine.train import train

    used = []
    original = L.Trainer.__init__

    def init(self, *args, **kwargs):
        used.append(kwargs.get("precision"))
        original(self, *args, **kwargs)

    monkeypatch.setattr(L.Trainer, "__init__", init)
    torch.set_num_threads(1)
    cfg = compose_config(
        "train",
        [
            "trainer.precision=auto",
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
            "dataset.layout.train_size=16",
            "dataset.layout.val_size=4",
            "dataset.layout.test_size=8",
            "dataset.batch_size=4",
        ],
        tmp_path,
    )
    train(cfg)
    native, _ = P.native_bf16(P.accelerator_device(cfg.trainer.accelerator))
    expected = "bf16-mixed" if native else "32-true"
    assert used == [expected]
    record = json.loads((tmp_path / "metrics.json").read_text())["precision"]
    assert (
        record["requested"] == "auto"
        and record["precision"] == expected
        and record["reason"].startswith("auto: ")
    )


def test_demo_defaults_to_auto_and_prints_the_choice(monkeypatch, capsys):
    import zegclip.apps.demo as demo

    built = []

    class Page:
        def launch(self, **kwargs):
            pass

    monkeypatch.setattr(demo, "shapes_examples", lambda folder: [])
    monkeypatch.setattr(demo, "build_demo", lambda model, examples, title: built.append(model) or Page())
    assert demo.main(["--device", "cpu"]) == 0
    assert demo.main(["--device", "cpu", "precision=fp32"]) == 0
    assert [m.precision.requested for m in built] == ["auto", "fp32"]
    printed = capsys.readouterr().out
    assert printed.count("precision: ") == 2 and built[0].precision.line() in printed
