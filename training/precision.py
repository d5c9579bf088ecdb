"""Keep a CPU recipe's bfloat16 autocast off a CPU that can only emulate it.

The CPU recipes train with ``bf16: true``: on a CPU with native bfloat16 (AVX-512-BF16 or AMX
tiles: Intel Sapphire Rapids and later, AMD Zen 4 and later) it is faster than float32. On a CPU
without it (AVX2 only), PyTorch emulates every bfloat16 matmul, and a step is tens of times
slower: a 1024 x 1024 matmul took 3.05 s in bfloat16 against 0.032 s in float32 on a 2-core AMD
EPYC (AVX2), and one SFT step of the multi-domain recipe 520 s there, against about 14 s on a
CPU with native bfloat16. So on such a CPU the scripts train in float32 instead (more precise,
the same recipe otherwise) and say so; ``RPO_KEEP_CPU_BF16=1`` keeps bfloat16 anyway.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

__all__ = ["KEEP_ENV", "avoid_emulated_bf16", "cpu_has_native_bf16"]

KEEP_ENV = "RPO_KEEP_CPU_BF16"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512-BF16 or AMX tiles), per PyTorch."""
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    found = [getattr(torch.cpu, name, None) for name in probes]
    if not any(found):  # a PyTorch without the probes: assume the recipe knows its machine
        return True
    return any(probe() for probe in found if probe is not None)


def avoid_emulated_bf16(training_args: Any) -> bool:
    """Turn off ``bf16`` for a CPU run on a CPU without native bfloat16; warn when it does.

    Args:
        training_args: The run's ``TrainingArguments`` (TRL's ``SFTConfig``, ``GRPOConfig``...),
            changed in place.

    Returns:
        True when bfloat16 was turned off.
    """
    if not getattr(training_args, "bf16", False) or os.environ.get(KEEP_ENV) == "1":
        return False
    if training_args.device.type != "cpu" or cpu_has_native_bf16():
        return False
    training_args.bf16 = False
    # TrainingArguments derives this from bf16 when it is built; the Trainer reads it.
    training_args.mixed_precision = "no"
    warnings.warn(
        "bf16: this CPU has no native bfloat16 (no AVX-512-BF16 or AMX), where PyTorch emulates "
        "it tens of times slower than float32; training in float32 instead. Set "
        f"{KEEP_ENV}=1 to keep bfloat16.",
        UserWarning,
        stacklevel=2,
    )
    return True
