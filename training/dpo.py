"""Preference training of the reflection model from users' feedback: TRL DPOTrainer (or KTOTrainer)
+ a PEFT LoRA, continuing from an adapter.

The records of :mod:`training.build_preferences` are TRL conversational preference data: DPO
pairs (``prompt``, ``chosen``, ``rejected``: the user's edit as an evidence-only trajectory
preferred over the model's own output), or, with ``python -m training.kto``, KTO's unpaired
records (``prompt``, ``completion``, ``label``) for accept/reject-only feedback.

**The reference model.** With ``--init_adapter`` (the usual case: the SFT/GRPO adapter that
answered the users) the adapter is loaded trainable and TRL's trainer adds a frozen copy of it
(the ``ref`` adapter), so the reference is the adapter that produced the rejected outputs, as DPO
assumes, at the cost of one more LoRA in memory (not a second model). Without it, a fresh LoRA is
trained and the reference is the base model with the adapter disabled. The ``ref`` copy is
dropped before saving, so the output folder holds one adapter that loads like any other::

    ReflectionModel.from_pretrained(adapter="runs/dpo_smollm2_135m_feedback")

The folder also receives ``recipe.yaml``, ``metrics.json`` and the adapter's settings file
(``rpo_settings.json``, carried over from ``--init_adapter``: preference training changes what the
adapter writes, not the prompt it reads).

CPU (SmolLM2-135M-Instruct, from the bundled adapter)::

    OMP_NUM_THREADS=1 python -m training.dpo --config training/recipes/dpo_smollm2_135m_cpu.yaml
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from training.precision import avoid_emulated_bf16
from training.sft import load_model_and_tokenizer, peft_config_for, save_run

__all__ = [
    "COLUMNS",
    "PreferenceScriptArguments",
    "adapter_settings_for",
    "load_preferences",
    "main",
    "make_parser",
    "train",
]

COLUMNS = {
    "dpo": ("prompt", "chosen", "rejected"),
    "kto": ("prompt", "completion", "label"),
}
"""The columns each trainer reads from the records of :mod:`training.build_preferences`."""


@dataclass
class PreferenceScriptArguments:
    """Data settings of the DPO and KTO scripts (the model and LoRA: TRL's ``ModelConfig``)."""

    dataset: str = field(
        default="runs/feedback_preferences.jsonl",
        metadata={"help": "JSONL of preference records from training.build_preferences."},
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
            "help": "Continue training this LoRA adapter; the reference is a frozen copy of it "
            "(None: a fresh LoRA from the recipe, the base model as reference)."
        },
    )
    lora_layers: list[int] | None = field(
        default=None,
        metadata={"help": "A fresh LoRA on these decoder layers only (None: all)."},
    )


def load_preferences(path: str | Path, method: str = "dpo", max_records: int | None = None) -> Any:
    """Load preference records as a ``datasets.Dataset`` with only the ``method``'s columns.

    Raises:
        ValueError: When the file holds no records, or records of the other method (naming the
            script or the ``build_preferences --format`` that fits).
    """
    from datasets import Dataset

    columns = COLUMNS[method]
    rows = []
    with Path(path).open(encoding="utf-8") as stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            record = json.loads(line)
            missing = [name for name in columns if name not in record]
            if missing:
                other = next(m for m in COLUMNS if m != method)
                fits = all(name in record for name in COLUMNS[other])
                raise ValueError(
                    f"{path} line {number} has no {missing[0]!r}: {method.upper()} reads "
                    f"{', '.join(columns)}."
                    + (
                        f" These are {other.upper()} records: train them with "
                        f"python -m training.{other}, or rebuild them with "
                        f"python -m training.build_preferences --format {method}."
                        if fits
                        else ""
                    )
                )
            rows.append({name: record[name] for name in columns})
            if max_records is not None and len(rows) >= max_records:
                break
    if not rows:
        raise ValueError(
            f"{path}: no preference records. DPO pairs come from edits; see the "
            ".summary.json beside the file for why events gave none."
        )
    return Dataset.from_list(rows)


def adapter_settings_for(script_args: PreferenceScriptArguments) -> Any:
    """The settings the trained adapter carries: those of ``--init_adapter``, else the defaults.

    The events were recorded by a rewriter that took its prompt settings from the adapter that
    answered, so the adapter trained on them keeps them (library defaults when it had none).
    """
    from langchain_rpo.adapter_settings import AdapterSettings

    found = AdapterSettings.read(script_args.init_adapter) if script_args.init_adapter else None
    return found if found is not None else AdapterSettings()


def _drop_reference_adapter(model: Any) -> None:
    """Delete the frozen ``ref`` copy the trainer added, so only the trained adapter is saved."""
    peft_config = getattr(model, "peft_config", None)
    if isinstance(peft_config, dict) and "ref" in peft_config:
        model.delete_adapter("ref")


def train(
    script_args: PreferenceScriptArguments,
    training_args: Any,
    model_args: Any,
    method: str = "dpo",
) -> dict[str, Any]:
    """Run DPO (or KTO); save the adapter, its settings, ``recipe.yaml`` and ``metrics.json``.

    Returns:
        The train metrics (also written to ``output_dir/metrics.json``).
    """
    from peft import PeftModel

    if method == "dpo":
        from trl import DPOTrainer as Trainer
    elif method == "kto":
        from trl import KTOTrainer as Trainer
    else:
        raise ValueError(f"method must be 'dpo' or 'kto', got {method!r}")

    started = time.perf_counter()
    avoid_emulated_bf16(training_args)
    model, tokenizer = load_model_and_tokenizer(model_args)
    peft_config = peft_config_for(model_args, script_args.lora_layers)
    if script_args.init_adapter:
        # Trainable, and with ref_model=None the trainer copies it as the frozen reference.
        model = PeftModel.from_pretrained(model, script_args.init_adapter, is_trainable=True)
        peft_config = None
    elif peft_config is None:
        raise ValueError(
            "Nothing to train: pass --init_adapter <adapter folder> to continue an adapter, or "
            "--use_peft (with the lora_* settings) for a fresh LoRA."
        )
    train_dataset = load_preferences(script_args.dataset, method, script_args.max_records)
    eval_dataset = (
        load_preferences(script_args.eval_dataset, method) if script_args.eval_dataset else None
    )
    trainer = Trainer(
        model=model,
        ref_model=None,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    metrics = {
        **result.metrics,
        "method": method,
        "records": len(train_dataset),
        "global_step": trainer.state.global_step,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    if eval_dataset is not None:
        metrics.update(trainer.evaluate())
    _drop_reference_adapter(trainer.accelerator.unwrap_model(trainer.model))
    trainer.save_model(training_args.output_dir)
    tokenizer.save_pretrained(training_args.output_dir)
    if trainer.is_world_process_zero():
        adapter_settings_for(script_args).write(training_args.output_dir)
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


def make_parser(method: str = "dpo") -> Any:
    """Return the TRL parser over the script, DPO (or KTO) and model dataclasses (``--config``)."""
    from trl import DPOConfig, KTOConfig, ModelConfig, TrlParser

    config = {"dpo": DPOConfig, "kto": KTOConfig}[method]
    return TrlParser((PreferenceScriptArguments, config, ModelConfig))


def main(argv: Sequence[str] | None = None, method: str = "dpo") -> dict[str, Any]:
    """Parse the recipe and the command line, train, save; return the metrics."""
    script_args, training_args, model_args = make_parser(method).parse_args_and_config(args=argv)
    metrics = train(script_args, training_args, model_args, method)
    print(
        f"{method.upper()} done: {metrics['global_step']} steps on {metrics['records']} records "
        f"in {metrics['wall_seconds']} s; adapter in {training_args.output_dir}",
        file=sys.stderr,
    )
    return metrics


if __name__ == "__main__":
    main()
