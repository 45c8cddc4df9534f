"""What embeds, on which machine: a pure table over the device and the CPU's features.

The table is a function of what was detected, not of the machine it runs on, so the tests
cover every kind of CPU from any one. A backend is taken by `auto` only where it was measured
to win (README, Performance):

| machine                          | auto picks                 | measured                        |
|----------------------------------|----------------------------|---------------------------------|
| CUDA                             | torch, fp16                | (no GPU was lent to this work)  |
| CPU with AVX512-BF16 or AMX-BF16 | torch, bf16                | 2.9x torch fp32                 |
| other CPUs                       | ONNX export, fp32, fused   | see ONNX_REASON                 |

int8 (dynamic quantization) is not in the table yet: its dense MRR@10 on ReQA held (-0.0006,
bench/dense_variants.py --int8), but its hybrid MRR@10 through `sift eval` and its rate on a
CPU without VNNI are unmeasured, and a lossy backend is taken only where both are.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Backend = Literal["torch", "onnx"]
Precision = Literal["fp32", "bf16", "fp16"]
BACKENDS = ("auto", "torch", "onnx")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

BF16_REASON = "CPU with AVX512-BF16/AMX: torch in bf16 (2.9x torch fp32, mean cosine 1.000)"
ONNX_REASON = (
    "CPU without AVX512-BF16/AMX: the model's ONNX export with fused attention, LayerNorm and "
    "GELU, fp32 (the same vectors as torch fp32, at a higher rate)"
)
CUDA_REASON = "CUDA: torch in fp16"


@dataclass(frozen=True)
class CpuFeatures:
    """What the CPU computes natively that changes the choice."""

    bf16: bool  # AVX512-BF16 or AMX-BF16: torch runs bf16 matmuls in hardware
    vnni: bool = False  # AVX512-VNNI / AVX-VNNI: int8 dot products (recorded, not used)

    @classmethod
    def from_flags(cls, flags: Iterable[str]) -> CpuFeatures:
        names = set(flags)
        return cls(
            bf16=bool(names & {"avx512_bf16", "amx_bf16"}),
            vnni=bool(names & {"avx512_vnni", "avx_vnni"}),
        )

    def describe(self) -> str:
        return "with bf16" if self.bf16 else "without bf16"


@functools.lru_cache(maxsize=1)
def detect_cpu() -> CpuFeatures:
    """The features of this machine's CPU (Linux /proc/cpuinfo; none known elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return CpuFeatures(bf16=False)
    for line in text.splitlines():
        if line.startswith("flags"):
            return CpuFeatures.from_flags(line.split(":", 1)[1].split())
    return CpuFeatures(bf16=False)


@dataclass(frozen=True)
class EncoderChoice:
    """What will embed, and why: recorded in the manifest and shown by `sift stats`."""

    backend: Backend
    precision: Precision
    reason: str


def choose_encoder(backend: str, precision: str, device: str, cpu: CpuFeatures) -> EncoderChoice:
    """The encoder for indexing on `device` with this CPU. `backend` and `precision` are the
    settings (auto or a value); a value given is obeyed, `auto` follows the table above."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: use auto, torch or onnx")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: use auto, fp32, bf16 or fp16")
    cuda = device.startswith("cuda")
    if backend == "onnx":
        if precision not in ("auto", "fp32"):
            raise ValueError(f"backend onnx runs in fp32, not {precision}")
        return EncoderChoice("onnx", "fp32", "backend=onnx (setting)")
    if precision != "auto":
        if backend == "auto" and precision == "fp32" and not cuda:
            return EncoderChoice("onnx", "fp32", "precision=fp32 on a CPU: " + ONNX_REASON)
        return EncoderChoice("torch", precision, f"precision={precision} (setting)")  # type: ignore[arg-type]
    if cuda:
        return EncoderChoice("torch", "fp16", CUDA_REASON)
    if cpu.bf16:
        return EncoderChoice("torch", "bf16", BF16_REASON)
    if backend == "torch":
        return EncoderChoice("torch", "fp32", "backend=torch (setting) on a CPU without bf16")
    return EncoderChoice("onnx", "fp32", ONNX_REASON)
