"""Supervised fine-tuning of the reflection model on trajectories: TRL SFTTrainer + a PEFT LoRA.

The records of :mod:`training.build_trajectories` are conversational prompt-completion examples,
so the loss falls on the assistant completion (the trajectory) only. A YAML recipe in
``training/recipes/`` sets everything (``--config``); any field can be overridden on the
command line. The output folder receives the adapter, the settings it was trained with
(``rpo_settings.json``: :mod:`langchain_rpo.adapter_settings`), the recipe (``recipe.yaml``, the
resolved arguments) and ``metrics.json`` (train metrics, wall time, the loss history).

CPU (the bundled adapter, SmolLM2-135M-Instruct)::

    OMP_NUM_THREADS=1 python -m training.sft --config training/recipes/sft_smollm2_135m_cpu.yaml

GPU, one or several (accelerate / DeepSpeed ZeRO-2)::

    accelerate launch --config_file training/recipes/accelerate_zero2.yaml \\
        -m training.sft --config training/recipes/sft_qwen2.5_1.5b_gpu.yaml
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from training.data import SettingsArguments
from training.precision import avoid_emulated_bf16

__all__ = ["SFTScriptArguments", "load_records", "peft_config_for", "save_run", "main"]


@dataclass
class SFTScriptArguments(SettingsArguments):
    """Data settings of the SFT script (the model and LoRA are TRL's ``ModelConfig``).

    The records' prompt settings (:class:`~training.data.SettingsArguments`: pass the
    ``max_item_chars`` they were built with) go into the adapter's ``rpo_settings.json``.
    """

    dataset: str = field(
        default="runs/pep_train_trajectories.jsonl",
        metadata={"help": "JSONL of SFT records from training.build_trajectories."},
    )
    eval_dataset: str | None = field(
        default=None, metadata={"help": "Optional JSONL of held-out records (eval loss)."}
    )
    max_records: int | None = field(
        default=None, metadata={"help": "Use the first N records only (smoke runs)."}
    )
    init_adapter: str | None = field(
        default=None,
        metadata={
            "help": "Continue training this LoRA adapter (None: a fresh LoRA from the recipe)."
        },
    )
    lora_layers: list[int] | None = field(
        default=None,
        metadata={
            "help": "Put the LoRA on these decoder layers only (PEFT layers_to_transform; None: "
            "all). On a CPU, the top layers alone cut the backward pass to those layers."
        },
    )


def peft_config_for(model_args: Any, lora_layers: Sequence[int] | None = None) -> Any:
    """Return TRL's LoRA config for ``model_args``, restricted to ``lora_layers`` when given."""
    from trl import get_peft_config

    config = get_peft_config(model_args)
    if config is not None and lora_layers:
        config.layers_to_transform = list(lora_layers)
    return config


def load_records(path: str | Path, max_records: int | None = None) -> Any:
    """Load SFT records as a ``datasets.Dataset`` with only ``prompt`` and ``completion``."""
    from datasets import Dataset

    rows = []
    with Path(path).open(encoding="utf-8") as stream:
        for line in stream:
            if line.strip():
                record = json.loads(line)
                rows.append({"prompt": record["prompt"], "completion": record["completion"]})
            if max_records is not None and len(rows) >= max_records:
                break
    if not rows:
        raise ValueError(f"{path}: no SFT records")
    return Dataset.from_list(rows)


def load_model_and_tokenizer(model_args: Any, dtype: Any = None) -> tuple[Any, Any]:
    """Load the reflection model's base (the packaged SmolLM2-135M-Instruct by default)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from langchain_rpo import assets

    path = model_args.model_name_or_path or assets.default_chat_model()
    model_args.model_name_or_path = path
    if dtype is None:
        dtype = getattr(torch, model_args.dtype) if model_args.dtype not in (None, "auto") else None
    tokenizer = AutoTokenizer.from_pretrained(path, revision=model_args.model_revision)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        path,
        revision=model_args.model_revision,
        dtype=dtype or torch.float32,
        attn_implementation=model_args.attn_implementation,
    )
    return model, tokenizer


def save_run(
    output_dir: str | Path,
    args: dict[str, Any],
    metrics: dict[str, Any],
    log_history: list[dict[str, Any]],
) -> None:
    """Write ``recipe.yaml`` (the resolved arguments) and ``metrics.json`` beside the adapter."""
    import yaml

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.yaml").write_text(
        yaml.safe_dump(json.loads(json.dumps(args, default=str)), sort_keys=False), encoding="utf-8"
    )
    (out / "metrics.json").write_text(
        json.dumps({**metrics, "log_history": log_history}, indent=2, default=str) + "\n",
        encoding="utf-8",
    )


def train(script_args: SFTScriptArguments, training_args: Any, model_args: Any) -> dict[str, Any]:
    """Run SFT; return the metrics (also written to ``output_dir/metrics.json``)."""
    from trl import SFTTrainer

    started = time.perf_counter()
    avoid_emulated_bf16(training_args)
    model, tokenizer = load_model_and_tokenizer(model_args)
    peft_config = peft_config_for(model_args, script_args.lora_layers)
    if script_args.init_adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, script_args.init_adapter, is_trainable=True)
        peft_config = None
    train_dataset = load_records(script_args.dataset, script_args.max_records)
    eval_dataset = load_records(script_args.eval_dataset) if script_args.eval_dataset else None
    trainer = SFTTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    tokenizer.save_pretrained(training_args.output_dir)
    script_args.adapter_settings().write(training_args.output_dir)
    metrics = {
        **result.metrics,
        "records": len(train_dataset),
        "global_step": trainer.state.global_step,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    if eval_dataset is not None:
        metrics.update(trainer.evaluate())
    save_run(
        training_args.output_dir,
        {
            "script": asdict(script_args),
            "model": asdict(model_args),
            "training": training_args.to_dict(),
        },
        metrics,
        trainer.state.log_history,
    )
    return metrics


def make_parser() -> Any:
    """Return the TRL parser over the script, SFT and model dataclasses (YAML ``--config``)."""
    from trl import ModelConfig, SFTConfig, TrlParser

    return TrlParser((SFTScriptArguments, SFTConfig, ModelConfig))


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse the recipe and the command line, train, save; return the metrics."""
    script_args, training_args, model_args = make_parser().parse_args_and_config(args=argv)
    metrics = train(script_args, training_args, model_args)
    print(
        f"SFT done: {metrics['global_step']} steps on {metrics['records']} records in "
        f"{metrics['wall_seconds']} s; adapter in {training_args.output_dir}",
        file=sys.stderr,
    )
    return metrics


if __name__ == "__main__":
    main()
