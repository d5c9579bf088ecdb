"""Training scripts of the reflection model: trajectories, SFT, GRPO (TRL + PEFT).

Run them as modules from the repository root (``python -m training.sft --config ...``); see
``training/README.md`` and the recipes in ``training/recipes/``.
"""
