"""Shared helpers of the speed and memory benchmarks: machine facts, the GEMM rate the FLOP floor
is computed from, FLOP counts, peak-memory readings, isolated child runs, the official model
(optional) and the result files.

Imported by the scripts in this folder (``python benchmarks/<script>.py`` puts it on the path).
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_HARNESS = ROOT.parent / "shared" / "official_harness"
THREADS = 2  # this project's CPU machine has 2 cores


# ----------------------------------------------------------------------------- machine


def set_threads(threads: int = THREADS) -> None:
    torch.set_num_threads(threads)


def cpu_name() -> str:
    """The CPU model, as the precision choice names it (``zegclip.model.precision.cpu_info``)."""
    return machine()["cpu"]


CAPABILITIES = {
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "avx512": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI", "MKL_ENABLE_INSTRUCTIONS": "AVX512"},
}
"""``--capability`` values: the settings that make torch (ATen's kernels, oneDNN's and MKL's GEMMs)
use no more than AVX2, or AVX-512 without its bf16 instructions, on a CPU that has more."""


def add_capability_option(parser: Any) -> None:
    parser.add_argument(
        "--capability",
        choices=["native", *CAPABILITIES],
        default="native",
        help="measure as on a CPU with less: avx2 (no AVX-512, no bf16) or avx512 (no bf16 instructions); "
        "the script runs again in a child process with the settings of benchlib.CAPABILITIES",
    )


def relaunch_with_capability(capability: str, argv: Sequence[str]) -> int | None:
    """For ``--capability avx2|avx512``: run this script again with the lowering settings (they are
    read when torch starts) and return its exit code; None when nothing needs lowering or this
    process already has the settings."""
    settings = CAPABILITIES.get(capability)
    if not settings or all(os.environ.get(k) == v for k, v in settings.items()):
        return None
    env = {**os.environ, **settings}
    return subprocess.run([sys.executable, sys.argv[0], *argv], env=env).returncode


def result_name(name: str, capability: str) -> str:
    """``benchmarks/results/<name>.md`` for the CPU as it is, ``<name>_avx2.md`` when lowered."""
    return name if capability == "native" else f"{name}_{capability}"


def machine() -> dict[str, Any]:
    """CPU model, the capability this process uses (AVX2 / AVX-512 / AVX-512 BF16 / AMX, with the
    settings that lowered it), whether bf16 is native, and the torch version."""
    from zegclip.model.precision import cpu_info

    info = cpu_info()
    lowered = [
        f"{k}={os.environ[k]}"
        for k in ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")
        if os.environ.get(k)
    ]
    return {
        "cpu": info.name,
        "cores": os.cpu_count(),
        "capability": info.capability,
        "hardware": info.hardware,
        "limits": [*info.limits, *lowered],
        "native_bf16": info.native_bf16,
        "torch": torch.__version__,
    }


def describe_machine() -> str:
    """``CPU: AMD EPYC (2 cores), capability AVX2 (lowered by ...; the CPU has AVX-512 BF16), bf16
    emulated; torch 2.14.1`` (the line every result file and README table names)."""
    m = machine()
    capability = m["capability"]
    if m["limits"]:
        capability += f" (lowered by {', '.join(m['limits'])}; the CPU has {m['hardware']})"
    bf16 = "bf16 native" if m["native_bf16"] else "**no native bf16: bf16 rows are emulated**"
    return f"CPU: {m['cpu']} ({m['cores']} cores), capability {capability}, {bf16}; torch {m['torch']}"


def precision_label(precision: str) -> str:
    """A table's precision cell: bf16 rows on a CPU without native bf16 say so."""
    if "bf16" in precision and not machine()["native_bf16"]:
        return f"{precision} (emulated: no native bf16)"
    return precision


def load_average() -> str:
    try:
        return "/".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


_START = (datetime.datetime.now(), load_average())  # when and under what load the script started


def header(command: str, note: str = "") -> str:
    """The lines every result file starts with: command, date, machine (CPU model, capability,
    torch version), load at the start."""
    started, load = _START
    lines = [
        f"`{command}`",
        "",
        f"{started.strftime('%Y-%m-%d %H:%M')}; {describe_machine()}; {torch.get_num_threads()} threads; "
        f"load average (1/5/15 min) at the start: {load}.",
    ]
    with contextlib.suppress(ValueError):
        if float(load.split("/")[0]) > 0.7:
            lines += [
                "",
                f"**The machine was not idle when this run started (load {load.split('/')[0]}): "
                "timings are noisy, re-run on a quiet machine for final numbers.**",
            ]
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def gemm_rate(dtype: torch.dtype = torch.float32, device: str = "cpu", repeats: int = 15) -> float:
    """Median GFLOP/s of ``F.linear`` at the ViT-B MLP shape ``(2070, 768) x (768, 3072)``."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2070, 768, generator=gen).to(device=device, dtype=dtype)
    w = torch.randn(3072, 768, generator=gen).to(device=device, dtype=dtype)
    flops = 2 * 2070 * 768 * 3072
    times = timed(lambda: F.linear(x, w), repeats=repeats, warmup=3, device=device)
    return flops / statistics.median(times) / 1e9


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], repeats: int, warmup: int = 1, device: str = "cpu") -> list[float]:
    """Wall-clock seconds of ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


# ----------------------------------------------------------------------------- memory (CPU)


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def reset_peak_rss() -> int:
    """Return freed heap to the OS, reset the resident-set high-water mark (``/proc/self/clear_refs``)
    and return the resident set size now, in bytes."""
    with contextlib.suppress(OSError):  # glibc only
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kb("VmRSS") * 1024


def peak_rss() -> int:
    """High-water mark of the resident set since the last :func:`reset_peak_rss`, in bytes."""
    return _status_kb("VmHWM") * 1024


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


# ----------------------------------------------------------------------------- FLOPs


def vit_step_flops(
    batch: int, tokens: int, width: int = 768, layers: int = 12, mlp_ratio: float = 4.0, train: bool = True
) -> float:
    """GEMM FLOPs of a frozen ViT's blocks: forward, plus (``train``) the backward to the inputs.

    Per layer and image: linear layers ``2 * (4 + 2 * mlp_ratio) * width^2`` per token, attention
    ``4 * tokens^2 * width`` (q k^T and p v). The backward of a frozen linear layer is one GEMM (input
    gradient only); the attention backward is two forward's worth (dq, dk, dv, dp), not counting the
    recomputation a flash kernel does.
    """
    linear = 2 * (4 + 2 * mlp_ratio) * width**2 * tokens
    attention = 4 * tokens**2 * width
    forward = batch * layers * (linear + attention)
    return forward + (batch * layers * (linear + 2 * attention) if train else 0)


def zegclip_step_flops(
    batch: int, grid: int, prompts: int, classes: int, embed: int = 512, width: int = 768, train: bool = True
) -> float:
    """GEMM FLOPs of a ZegCLIP ViT-B/16 forward (+ backward when ``train``) on ``grid x grid``
    patches: patch embedding, the 12 prompted blocks and projection (frozen: backward = input
    gradient only), relationship descriptor and 3-layer decoder (trainable: backward = 2 x forward).
    """
    patches, tokens = grid * grid, 1 + prompts + grid * grid
    tower = vit_step_flops(batch, tokens, width, train=train)
    patch_embed = batch * 2 * patches * 3 * 16 * 16 * width  # its input needs no gradient
    proj = batch * 2 * tokens * width * embed * (2 if train else 1)
    e, c, p = embed, classes, patches
    logits_part = 2 * c * e * e + 2 * p * e * e + 2 * c * p * e  # q, k, q k^T
    full_extra = 2 * p * e * e + 2 * c * p * e + 2 * c * e * e + 16 * c * e * e  # v, attn v, out, FFN
    head = batch * (4 * c * e * e + 3 * logits_part + 2 * full_extra) * (3 if train else 1)
    return tower + patch_embed + proj + head


# ----------------------------------------------------------------------------- child processes


def run_child(script: Path, spec: dict[str, Any], timeout: float = 3600) -> dict[str, Any]:
    """Run ``script --worker JSON`` in a fresh Python (its own memory high-water mark) and return
    the JSON object its last stdout line holds."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = [sys.executable, str(script), "--worker", json.dumps(spec)]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(
            f"benchmark worker {spec} failed (exit {result.returncode}):\n{result.stderr[-4000:]}"
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- official model


def official_harness() -> tuple[Any | None, str]:
    """The official-code harness module (``ref_model``) or None, and a sentence saying why not.

    Needs ``ZEGCLIP_REF`` (an exported tree of the official repository) and the harness folder
    (``ZEGCLIP_HARNESS``, default ``../shared/official_harness`` beside the repository).
    """
    ref = os.environ.get("ZEGCLIP_REF")
    if not ref:
        return (
            None,
            "official column skipped: ZEGCLIP_REF is not set (see ../shared/official_harness/README.md)",
        )
    if not (Path(ref) / "models" / "segmentor" / "zegclip.py").is_file():
        return None, f"official column skipped: ZEGCLIP_REF={ref} holds no official ZegCLIP tree"
    harness = Path(os.environ.get("ZEGCLIP_HARNESS", DEFAULT_HARNESS))
    if not (harness / "ref_model.py").is_file():
        return None, f"official column skipped: no harness at {harness} (set ZEGCLIP_HARNESS)"
    if str(harness) not in sys.path:
        sys.path.insert(0, str(harness))
    try:
        import ref_model
    except Exception as err:  # e.g. timm missing
        return None, f"official column skipped: the harness does not import ({err})"
    return ref_model, ""


def official_config(
    harness: Any, class_names: Sequence[str], seen: Sequence[int], prompts: int
) -> dict[str, Any]:
    """The harness config of the official ViT-B/16 model for a vocabulary and prompt count."""
    cfg = harness.real_voc_cfg(load_text_embedding=None)
    cfg.update(
        num_tokens=prompts,
        class_names=list(class_names),
        seen_idx=list(seen),
        all_idx=list(range(len(class_names))),
    )
    return cfg


# ----------------------------------------------------------------------------- output


def write_result(name: str, text: str, out: str | Path | None = None) -> Path:
    """Print ``text`` and write it to ``benchmarks/results/<name>.md`` (or ``out``)."""
    path = Path(out) if out else RESULTS / f"{name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(text)
    print(f"(written to {path})")
    return path


def fmt_time(times: Sequence[float]) -> str:
    """``median (min)`` in seconds."""
    return f"{statistics.median(times):.2f} s ({min(times):.2f})"
