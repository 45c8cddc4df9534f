"""What embeds, on which machine: a pure table over the device and the CPU's features.

The table is a function of what was detected, not of the machine it runs on, so the tests
cover every kind of CPU from any one. A backend is taken by `auto` only where it was measured
to win (README, Performance):

| machine                          | auto picks               | measured                      |
|----------------------------------|--------------------------|-------------------------------|
| CUDA                             | torch, fp16              | (no GPU was lent to this work)|
| CPU with AVX512-BF16 or AMX-BF16 | torch, bf16              | 1.6-2.9x torch fp32           |
| other CPUs with VNNI (int8 dots) | ONNX export, int8, fused | see INT8_REASON               |
| other CPUs                       | ONNX export, fp32, fused | see ONNX_REASON               |

int8 is lossy, so it is also held to the quality rule: `auto` takes it only while its measured
loss of ranking quality (`INT8_LOSS`, `sift eval` MRR@10 against the fp32 export in one run)
stays within `QUALITY_TOLERANCE` in the dense and the hybrid mode alike. On CPUs with bf16 it
is not taken: there it was measured only 1.1x bf16, which is the closer to fp32.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Backend = Literal["torch", "onnx"]
Precision = Literal["fp32", "bf16", "fp16", "int8"]
BACKENDS = ("auto", "torch", "onnx")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")

BF16_REASON = "CPU with AVX512-BF16/AMX: torch in bf16 (2.9x torch fp32, mean cosine 1.000)"
ONNX_REASON = (
    "CPU without AVX512-BF16/AMX: the model's ONNX export with fused attention, LayerNorm and "
    "GELU, fp32 (the same vectors as torch fp32, at a higher rate)"
)
CUDA_REASON = "CUDA: torch in fp16"

#: How far a lossy backend may move `sift eval`'s MRR@10 (dense and hybrid, each) from fp32.
QUALITY_TOLERANCE = 0.005


@dataclass(frozen=True)
class QualityLoss:
    """A lossy backend's MRR@10 minus the fp32 export's, on ReQA SQuAD v1.1 dev (all 10,570
    questions, `sift eval`), both indexes built and scored in one run."""

    dense: float
    hybrid: float

    def within(self, tolerance: float = QUALITY_TOLERANCE) -> bool:
        return abs(self.dense) <= tolerance and abs(self.hybrid) <= tolerance


#: int8 against fp32, measured (README, Performance: `bench/int8_quality.py`), the worst of three
#: runs: int8 quantizes each batch's activations on their own range, so its vectors, and its
#: MRR@10, move a little with the batches (the others: +0.0000 and +0.0002 under rrf fusion;
#: -0.0014 and -0.0010 under convex, the default since).
INT8_LOSS = QualityLoss(dense=-0.0014, hybrid=-0.0015)
INT8_REASON = (
    "CPU without AVX512-BF16/AMX, with VNNI: the fused ONNX export with its MatMul weights in "
    "int8 (1.66x the fp32 export on a VNNI CPU; sift eval MRR@10 within 0.0015 of fp32, "
    "dense and hybrid)"
)


@dataclass(frozen=True)
class CpuFeatures:
    """What the CPU computes natively that changes the choice."""

    bf16: bool  # AVX512-BF16 or AMX-BF16: torch runs bf16 matmuls in hardware
    vnni: bool = False  # AVX512-VNNI / AVX-VNNI: int8 dot products in hardware

    @classmethod
    def from_flags(cls, flags: Iterable[str]) -> CpuFeatures:
        names = set(flags)
        return cls(
            bf16=bool(names & {"avx512_bf16", "amx_bf16"}),
            vnni=bool(names & {"avx512_vnni", "avx_vnni"}),
        )

    def describe(self) -> str:
        if self.bf16:
            return "with bf16"
        return "without bf16, with VNNI" if self.vnni else "without bf16 or VNNI"


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


def choose_encoder(
    backend: str,
    precision: str,
    device: str,
    cpu: CpuFeatures,
    int8_loss: QualityLoss = INT8_LOSS,
) -> EncoderChoice:
    """The encoder for indexing on `device` with this CPU. `backend` and `precision` are the
    settings (auto or a value); a value given is obeyed, `auto` follows the table above, and
    takes int8 only while `int8_loss` keeps the quality rule."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: use auto, torch or onnx")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: use auto, fp32, bf16, fp16 or int8")
    cuda = device.startswith("cuda")
    if precision == "int8":
        if backend == "torch":
            raise ValueError("precision int8 runs on the onnx backend, not torch")
        return EncoderChoice("onnx", "int8", "precision=int8 (setting)")
    if backend == "onnx":
        if precision not in ("auto", "fp32"):
            raise ValueError(f"backend onnx runs in fp32 or int8, not {precision}")
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
    if backend == "auto" and cpu.vnni and int8_loss.within():
        return EncoderChoice("onnx", "int8", INT8_REASON)
    return EncoderChoice("onnx", "fp32", ONNX_REASON)
