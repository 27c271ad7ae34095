"""The precision a model runs in: ``auto`` picks bf16 where the device computes it natively, fp32
elsewhere; an explicit bf16 request on a CPU without native bf16 is warned about, once.

Inference precisions: ``fp32``; ``bf16-mixed`` (bf16 autocast over fp32 weights: matrix products
in bf16, norms, softmax and the scores in fp32; what ``auto`` picks where bf16 is native);
``bf16`` and ``fp16`` (the weights cast, half the memory, every operation in that type).

bf16 is fast on a CPU only with bf16 instructions (AVX-512 BF16 or AMX) that oneDNN, which runs
torch's bf16 matrix products, may use; ``ONEDNN_MAX_CPU_ISA`` (or ``DNNL_MAX_CPU_ISA``) lowers
what it uses. Elsewhere bf16 is emulated and much slower than fp32
(:data:`EMULATED_BF16_SLOWDOWN`). ATen's own kernels (``torch.backends.cpu.get_cpu_capability()``,
lowered by ``ATEN_CPU_CAPABILITY``) run the element-wise operations; lowering them alone to AVX2
left bf16 faster than fp32 (measured, see README "Speed and memory"), so they are reported, not
decisive. On CUDA, bf16 is native from compute capability 8.0 (Ampere) on.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from zegclip.common.errors import ConfigError

PRECISIONS = {
    "fp32": "fp32",
    "32": "fp32",
    "float32": "fp32",
    "32-true": "fp32",
    "bf16-mixed": "bf16-mixed",
    "bf16": "bf16",
    "bfloat16": "bf16",
    "bf16-true": "bf16",
    "fp16": "fp16",
    "16": "fp16",
    "float16": "fp16",
    "16-true": "fp16",
}
"""Names :func:`choose` accepts besides ``"auto"`` -> the precision they mean."""

WEIGHT_DTYPES = {
    "fp32": torch.float32,
    "bf16-mixed": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
_DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}

LEVELS = ("below AVX2", "AVX2", "AVX-512", "AVX-512 BF16", "AMX")
"""CPU capability levels, lowest first; bf16 is native from ``"AVX-512 BF16"`` on."""

EMULATED_BF16_SLOWDOWN = {"below AVX2": 5.0, "AVX2": 5.0, "AVX-512": 2.0}
"""About how many times slower than fp32 bf16-mixed inference of a ViT-B/16 crop runs where bf16
is emulated (``python benchmarks/inference_benchmark.py --capability avx2 | avx512``)."""

# oneDNN's ONEDNN_MAX_CPU_ISA values (dnnl_cpu_isa_t) -> the level they allow
_ONEDNN_LEVELS = {
    "SSE41": 0,
    "AVX": 0,
    "AVX2": 1,
    "AVX2_VNNI": 1,
    "AVX2_VNNI_2": 1,
    "AVX512_CORE": 2,
    "AVX512_CORE_VNNI": 2,
    "AVX512_CORE_BF16": 3,
    "AVX512_CORE_FP16": 3,
    "AVX10_1_512": 3,
    "AVX10_2_512": 3,
    "AVX512_CORE_AMX": 4,
    "AVX10_1_512_AMX": 4,
    "AVX512_CORE_AMX_FP16": 4,
    "AVX10_1_512_AMX_FP16": 4,
    "AVX10_2_512_AMX_2": 4,
}


class SlowPrecisionWarning(UserWarning):
    """An explicit precision that the device only emulates (much slower than fp32)."""


@dataclass(frozen=True)
class CPUInfo:
    """What this process's CPU offers for bf16.

    Attributes:
        name: the CPU model (``/proc/cpuinfo``).
        hardware: the highest level the CPU has (:data:`LEVELS`).
        capability: the level bf16 matrix products get: ``hardware``, lowered by oneDNN's
            maximum ISA.
        limits: the settings that lowered ``capability``, e.g. ``("ONEDNN_MAX_CPU_ISA=AVX2",)``.
        aten: ATen's kernel capability (``torch.backends.cpu.get_cpu_capability()``) when
            ``ATEN_CPU_CAPABILITY`` set it, else ``""``.
    """

    name: str
    hardware: str
    capability: str
    limits: tuple[str, ...] = ()
    aten: str = ""

    @property
    def native_bf16(self) -> bool:
        return LEVELS.index(self.capability) >= LEVELS.index("AVX-512 BF16")

    def describe(self) -> str:
        """e.g. ``"AMD EPYC, AVX2 (lowered by ONEDNN_MAX_CPU_ISA=AVX2; the CPU has AVX-512 BF16)"``."""
        text = f"{self.name}, {self.capability}"
        if self.limits:
            text += f" (lowered by {', '.join(self.limits)}; the CPU has {self.hardware})"
        return text + (f", ATen kernels {self.aten} (ATEN_CPU_CAPABILITY)" if self.aten else "")


@functools.cache
def cpu_info() -> CPUInfo:
    """The CPU's bf16 capability as this process uses it (the settings are read when torch starts)."""
    caps = _cpu_capabilities()
    if caps.get("amx_bf16"):
        hardware = 4
    elif caps.get("avx512_bf16"):
        hardware = 3
    elif all(caps.get(k) for k in ("avx512_f", "avx512_bw", "avx512_vl", "avx512_dq")):
        hardware = 2
    else:
        hardware = 1 if caps.get("avx2") else 0
    level, limits = hardware, []
    isa_var, isa = _onednn_max_isa()
    if isa is not None and _ONEDNN_LEVELS[isa] < hardware:
        level = _ONEDNN_LEVELS[isa]
        limits.append(f"{isa_var}={isa}")
    aten = torch.backends.cpu.get_cpu_capability() if os.environ.get("ATEN_CPU_CAPABILITY") else ""
    return CPUInfo(
        name=_cpu_name(), hardware=LEVELS[hardware], capability=LEVELS[level], limits=tuple(limits), aten=aten
    )


def _cpu_capabilities() -> dict[str, Any]:
    """cpuinfo's flags as torch reads them (``torch.cpu.get_capabilities``; older torch: the
    ``_is_*_supported`` functions)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return {}
    get = getattr(torch.cpu, "get_capabilities", None)
    if get is not None:
        return dict(get())
    flags = {
        "amx_bf16": "_is_amx_tile_supported",
        "avx512_bf16": "_is_avx512_bf16_supported",
        "avx2": "_is_avx2_supported",
    }
    caps = {key: bool(getattr(torch.cpu, fn, lambda: False)()) for key, fn in flags.items()}
    avx512 = bool(getattr(torch.cpu, "_is_avx512_supported", lambda: False)())
    caps.update(dict.fromkeys(("avx512_f", "avx512_bw", "avx512_vl", "avx512_dq"), avx512))
    return caps


def _onednn_max_isa() -> tuple[str, str | None]:
    """oneDNN's ISA limit from the environment (``ONEDNN_`` before ``DNNL_``, as oneDNN reads
    them); None when unset, ``ALL``/``DEFAULT`` or a value oneDNN does not know (it ignores those)."""
    for var in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        value = os.environ.get(var)
        if value:
            isa = value.strip().upper()
            return var, isa if isa in _ONEDNN_LEVELS else None
    return "", None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a model runs in and why; ``to_dict()`` is what run files record."""

    requested: str
    precision: str
    device: str
    reason: str

    @property
    def dtype(self) -> torch.dtype | None:
        """The weights' dtype (None: as saved)."""
        return WEIGHT_DTYPES.get(self.precision)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The dtype inference autocasts to (``bf16-mixed``), else None."""
        return torch.bfloat16 if self.precision == "bf16-mixed" else None

    def line(self) -> str:
        """One line for the console: ``precision: bf16-mixed (auto: ...)``."""
        return f"precision: {self.precision} ({self.reason})"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.device == "cpu":
            info = cpu_info()
            out.update(cpu=info.name, capability=info.capability, native_bf16=info.native_bf16)
            if info.limits:
                out["capability_limits"] = list(info.limits)
            if info.aten:
                out["aten_capability"] = info.aten
        elif self.device.startswith("cuda") and torch.cuda.is_available():
            out["gpu"] = torch.cuda.get_device_name(torch.device(self.device))
        out["torch"] = torch.__version__
        return out


def autocast(choice: PrecisionChoice | None, device_type: str) -> contextlib.AbstractContextManager:
    """The autocast region ``choice`` runs inference in (a no-op but for ``bf16-mixed``)."""
    dtype = choice.autocast_dtype if choice is not None else None
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=dtype)


def device_type(device: str | torch.device | None) -> str:
    """``"cpu"``, ``"cuda"``, ``"cuda:1"``... (None: cuda when available, as the entry points)."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(torch.device(device))


def native_bf16(device: str | torch.device | None = "cpu") -> tuple[bool, str]:
    """Whether ``device`` computes bf16 natively, and a sentence saying why (not)."""
    device = device_type(device)
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            return False, "CUDA is not available"
        major, minor = torch.cuda.get_device_capability(torch.device(device))
        name = torch.cuda.get_device_name(torch.device(device))
        if major >= 8:
            return True, f"{name} (compute capability {major}.{minor}) computes bf16 natively"
        return False, f"{name} (compute capability {major}.{minor}) has no native bf16 (needs 8.0)"
    if device == "cpu":
        info = cpu_info()
        if info.native_bf16:
            return True, f"the CPU computes bf16 natively ({info.describe()})"
        return False, f"the CPU has no native bf16 ({info.describe()})"
    return False, f"bf16 speed on {device} is not known"


def choose(
    requested: str | torch.dtype | PrecisionChoice | None, device: str | torch.device | None = "cpu"
) -> PrecisionChoice:
    """The precision to run inference in on ``device``.

    Args:
        requested: ``"auto"`` (``bf16-mixed`` where bf16 is native, else ``fp32``), a name of
            :data:`PRECISIONS`, a dtype (the weights cast to it), None (the weights as saved), or
            a choice already made (returned as it is).

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    if isinstance(requested, PrecisionChoice):
        return requested
    device = device_type(device)
    if requested is None:
        return PrecisionChoice("as saved", "as saved", device, "the weights' own dtype")
    if isinstance(requested, torch.dtype):
        if requested not in _DTYPE_NAMES:
            raise ConfigError(f"precision must be one of {sorted(_DTYPE_NAMES.values())}, got {requested}")
        return _explicit(_DTYPE_NAMES[requested], _DTYPE_NAMES[requested], device)
    text = str(requested).strip().lower()
    if text == "auto":
        native, why = native_bf16(device)
        return PrecisionChoice("auto", "bf16-mixed" if native else "fp32", device, f"auto: {why}")
    if text not in PRECISIONS:
        raise ConfigError(f"precision must be one of {['auto', *sorted(PRECISIONS)]}, got {requested!r}")
    return _explicit(str(requested), PRECISIONS[text], device)


def _explicit(requested: str, name: str, device: str) -> PrecisionChoice:
    if name.startswith("bf16"):
        warn_if_emulated(device, f"precision={requested}")
    return PrecisionChoice(requested, name, device, "as requested")


def choose_trainer_precision(requested: Any, device: str | torch.device | None) -> PrecisionChoice:
    """A trainer precision, ``"auto"`` or one of Lightning's (``"32-true"``, ``"bf16-mixed"``...):
    ``auto`` gives ``bf16-mixed`` where bf16 is native, else ``32-true``; others are kept (a bf16
    one on a CPU without native bf16 is warned about). ``precision`` holds the value to train with."""
    device = device_type(device)
    text = str(requested).strip()
    if text.lower() == "auto":
        native, why = native_bf16(device)
        return PrecisionChoice("auto", "bf16-mixed" if native else "32-true", device, f"auto: {why}")
    if "bf16" in text.lower():
        warn_if_emulated(device, f"trainer.precision={text}")
    return PrecisionChoice(text, text, device, "as requested")


def accelerator_device(accelerator: str | None) -> str:
    """The device type a trainer's ``accelerator`` setting (``auto``, ``gpu``, ``cuda``, ``cpu``,
    ``mps``) runs on, for the precision choice."""
    name = str(accelerator or "auto").lower()
    if name in ("gpu", "cuda") or (name == "auto" and torch.cuda.is_available()):
        return "cuda"
    if name == "mps" or (name == "auto" and torch.backends.mps.is_available()):
        return "mps"
    return "cpu"


_WARNED: set[str] = set()


def warn_if_emulated(device: str | torch.device | None, request: str) -> bool:
    """Warn once per process and request, in one line, when bf16 on ``device`` is emulated (a
    CPU without AVX-512 BF16 / AMX that oneDNN may use). Returns whether it is emulated.

    A warning, not a refusal: bf16 weights still halve the memory, and a user who asked for it
    may want that or the bf16 numbers."""
    if device_type(device) != "cpu":
        return False
    info = cpu_info()
    if info.native_bf16:
        return False
    if request not in _WARNED:
        _WARNED.add(request)
        slowdown = EMULATED_BF16_SLOWDOWN.get(info.capability, EMULATED_BF16_SLOWDOWN["AVX2"])
        message = (
            f"bf16 on a CPU without native bf16 ({request}; {info.describe()}): expect it about "
            f"{slowdown:g}x slower than fp32 or more; precision=auto picks fp32 here "
            "(to keep bf16 and silence this: PYTHONWARNINGS='ignore:bf16 on a CPU')"
        )
        # no source file or line: the warning prints as one line
        warnings.warn_explicit(message, SlowPrecisionWarning, "zegclip", 0, module="zegclip.model.precision")
    return True
