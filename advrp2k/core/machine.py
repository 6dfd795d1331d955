"""What decides whether a CPU training reproduces bit for bit: the machine's numeric identity.

On a CPU, torch's float sums (hence trained weights) depend on the number of threads, the
instruction set its kernels dispatch to (AVX2, AVX-512, ...), and the BLAS and oneDNN builds it
runs; on CUDA, on the GPU model and the cuDNN version. Each training records this beside its
checkpoint and every entry states it, so a reader can tell which runs should agree exactly.
"""
from __future__ import annotations

import platform
from pathlib import Path


def numeric_identity(device: str = "cpu") -> dict:
    """Threads, CPU model and instruction set, BLAS and oneDNN builds, determinism settings (and
    the GPU with cuDNN on CUDA)."""
    import torch

    info = {"threads": torch.get_num_threads(), "cpu": _cpu_model(), "machine": platform.machine(),
            "cpu_capability": _call(lambda: torch.backends.cpu.get_cpu_capability()),
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            **_library_lines(torch.__config__.parallel_info())}
    if str(device).startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def _library_lines(parallel_info: str) -> dict:
    """The BLAS (MKL/OpenBLAS) and oneDNN lines of torch's parallel info."""
    out = {}
    for line in (s.strip() for s in parallel_info.splitlines()):
        if "Math Kernel Library" in line or "OpenBLAS" in line:
            out["blas"] = line
        elif "MKL-DNN" in line or "oneDNN" in line:
            out["onednn"] = line
    return out


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _call(f):
    try:
        return f()
    except Exception:  # an older torch without the query
        return None
