"""FLOPs of a stage, counted, and the device's peak, measured: the two numbers behind "fraction of peak".

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` while the stage runs once: matrix multiplies,
convolutions (transposed too) and attention, at 2 FLOPs per multiply-add. Elementwise work (norms, activations, the
decoder's snake) is not counted, so a stage bound by it shows a low fraction of peak: that is the point.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode, flop_registry, register_flop_formula, sdpa_flop_count

# torch counts the CUDA attention kernels but not the CPU one that F.scaled_dot_product_attention dispatches to
if torch.ops.aten._scaled_dot_product_flash_attention_for_cpu not in flop_registry:

    @register_flop_formula(torch.ops.aten._scaled_dot_product_flash_attention_for_cpu)
    def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` (see the module docstring for what is counted)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int | None = None, repeats: int = 5) -> float:
    """The FLOP/s of a large square matmul in ``dtype`` on ``device``, best of ``repeats`` after a warm-up: the
    measured peak that a stage's throughput is compared with (not a datasheet number)."""
    size = size or (8192 if device.type == "cuda" else 4096)
    a = torch.randn(size, size, device=device).to(dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    best = float("inf")
    with torch.inference_mode():
        for i in range(repeats + 1):
            sync()
            start = time.perf_counter()
            a @ a
            sync()
            if i:
                best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best
