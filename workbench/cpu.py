"""The one reader of CPU facts: model name, core count and ISA flags of this machine.

Expectations about low-precision speed and int8 numerics depend on these (AVX512-VNNI,
AVX-VNNI, AVX512-BF16, AMX, AVX512-FP16), so every caller reads them here.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path

#: flags that change how precisions run (int8 dot products, bf16/fp16 arithmetic, matrix units)
KEY_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
    "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "amx_fp16",
    "asimd", "asimdhp", "fphp", "bf16", "i8mm", "sve", "sve2",
)  # fmt: skip


@dataclass(frozen=True)
class CpuInfo:
    """What this CPU is and which precision-relevant instructions it has."""

    model: str
    cores: int
    flags: tuple[str, ...]
    arch: str

    @property
    def key_flags(self) -> tuple[str, ...]:
        return tuple(f for f in KEY_FLAGS if f in self.flags)

    @property
    def has_vnni(self) -> bool | None:
        """8-bit dot products (AVX512-VNNI / AVX-VNNI); None when the flags are unknown."""
        if not self.flags:
            return None
        return "avx512_vnni" in self.flags or "avx_vnni" in self.flags

    def to_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "cores": self.cores,
            "arch": self.arch,
            "flags": list(self.flags),
            "key_flags": list(self.key_flags),
        }


def parse_cpuinfo(text: str) -> CpuInfo:
    """CpuInfo from the text of ``/proc/cpuinfo`` (x86 ``flags`` or ARM ``Features``)."""
    model, flags = platform.processor() or platform.machine(), ()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and value.strip():
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = tuple(sorted(value.split()))
    return CpuInfo(model=model, cores=os.cpu_count() or 1, flags=flags, arch=platform.machine())


@functools.cache
def cpu_info(path: str = "/proc/cpuinfo") -> CpuInfo:
    """This machine's CPU (empty flags where ``/proc/cpuinfo`` is absent, e.g. macOS)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    return parse_cpuinfo(text)
