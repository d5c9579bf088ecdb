"""KTO of the reflection model from accept/reject feedback: TRL KTOTrainer + a PEFT LoRA.

The unpaired twin of :mod:`training.dpo` (same arguments, same reference model, same outputs),
for feedback that is mostly verdicts rather than edits: each record of
``python -m training.build_preferences --format kto`` is one completion labelled desirable (an
accepted rewrite, a user's edit as a trajectory) or undesirable (a rejected or edited output).
KTO weighs the two kinds by ``desirable_weight`` / ``undesirable_weight``; keep their ratio near
the ratio of undesirable to desirable records (TRL warns when it is not).

    OMP_NUM_THREADS=1 python -m training.kto --config training/recipes/kto_smollm2_135m_cpu.yaml
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from training import dpo

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse the recipe and the command line, train with KTO, save; return the metrics."""
    return dpo.main(argv, method="kto")


if __name__ == "__main__":
    main()
