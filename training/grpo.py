"""GRPO of the reflection model from its SFT adapter, with a progressive multi-context curriculum.

Rewards (see :mod:`training.rewards`): the task metric of the parsed rewrite against the gold
(accuracy for labels, ``1 - |error| / 4`` for ratings, ROUGE-L for text) plus a format reward for
a well-formed trajectory. The curriculum trains in stages that recall k = 1, 2, 4, then 8 history
items (the prompt is rebuilt per stage, exactly as ``rpo eval`` builds it for that k); the policy
carries over from stage to stage and the reward of each stage is logged and saved. The questions
are shuffled once per run and each stage starts where the previous one stopped
(:func:`stage_orders`), so a short curriculum trains on new questions at every stage instead of
the same first few (``GRPOTrainer`` shuffles with ``args.seed``, which would give every stage the
same order).

CPU (the bundled adapter)::

    OMP_NUM_THREADS=1 python -m training.grpo --config training/recipes/grpo_smollm2_135m_cpu.yaml

GPU::

    accelerate launch --config_file training/recipes/accelerate_zero2.yaml \\
        -m training.grpo --config training/recipes/grpo_qwen2.5_1.5b_gpu.yaml
"""

from __future__ import annotations

import copy
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from training.data import (
    DataArguments,
    Recall,
    SettingsArguments,
    Split,
    load_split,
    recall_for,
    reflection_prompt,
    zero_drafts,
)
from training.precision import avoid_emulated_bf16
from training.rewards import CurriculumStage, curriculum, make_reward_funcs
from training.sft import load_model_and_tokenizer, peft_config_for, save_run

__all__ = [
    "GRPOScriptArguments",
    "prompts_per_step",
    "stage_orders",
    "stage_dataset",
    "stage_rewards",
    "train",
    "main",
]


@dataclass
class GRPOScriptArguments(SettingsArguments, DataArguments):
    """Data and curriculum settings of the GRPO script (the model and LoRA: TRL's ``ModelConfig``);
    the settings the saved adapter records (:class:`~training.data.SettingsArguments`)."""

    questions: str = field(
        default="langchain_rpo/data/pep_titles/train_questions.json",
        metadata={"help": "LaMP {split}_questions.json to train on."},
    )
    outputs: str = field(
        default="langchain_rpo/data/pep_titles/train_outputs.json",
        metadata={"help": "LaMP {split}_outputs.json (the golds the reward scores against)."},
    )
    sft_adapter: str | None = field(
        default=None,
        metadata={
            "help": "The SFT LoRA adapter to start from (None: a fresh LoRA from the recipe)."
        },
    )
    curriculum_ks: list[int] = field(
        default_factory=lambda: [1, 2, 4, 8],
        metadata={"help": "History items recalled in each curriculum stage, growing."},
    )
    steps_per_stage: list[int] = field(
        default_factory=lambda: [10],
        metadata={"help": "Optimizer steps per stage (one value for all, or one per stage)."},
    )


def prompts_per_step(args: Any) -> int:
    """Return how many distinct prompts one optimizer step of ``GRPOTrainer`` draws.

    One generation batch holds ``generation_batch_size / num_generations`` prompts and serves
    ``steps_per_generation * num_iterations / gradient_accumulation_steps`` optimizer steps.

    >>> from types import SimpleNamespace as NS
    >>> prompts_per_step(NS(generation_batch_size=8, num_generations=4, steps_per_generation=1,
    ...                     num_iterations=1, gradient_accumulation_steps=1))
    2
    """
    prompts = args.generation_batch_size // args.num_generations
    steps = args.steps_per_generation * args.num_iterations // args.gradient_accumulation_steps
    return max(1, prompts // max(1, steps))


def stage_orders(
    n: int, schedule: Sequence[CurriculumStage], per_step: int, seed: int
) -> list[list[int]]:
    """Return each stage's question order: one shuffle, each stage starting after the last one's.

    Args:
        n: How many questions the split has.
        schedule: The curriculum.
        per_step: Distinct prompts one optimizer step draws (:func:`prompts_per_step`).
        seed: The shuffle's seed.

    Returns:
        One order (a rotation of the same permutation of ``range(n)``) per stage; the stages draw
        disjoint questions until the split is used up, then wrap around.

    >>> orders = stage_orders(10, curriculum((1, 2), 2), per_step=2, seed=0)
    >>> orders[1][:4] == orders[0][4:8]
    True
    """
    order = list(range(n))
    random.Random(seed).shuffle(order)
    orders, offset = [], 0
    for stage in schedule:
        start = offset % n if n else 0
        orders.append(order[start:] + order[:start])
        offset += stage.steps * per_step
    return orders


def stage_dataset(
    split: Split,
    drafts: dict[str, str],
    recall: Recall,
    k: int,
    order: Sequence[int] | None = None,
) -> Any:
    """Return a stage's conversational prompt dataset (``prompt``, ``gold``, ``id``) at ``k``.

    Args:
        split: The training split.
        drafts: Question id to the base model's draft.
        recall: Recalls each question's history items.
        k: How many items to recall.
        order: The questions' order by index (default: file order).
    """
    from datasets import Dataset

    questions = split.questions if order is None else [split.questions[i] for i in order]
    return Dataset.from_list(
        [
            {
                "id": q.id,
                "prompt": reflection_prompt(drafts[q.id], recall.rendered(q, k), q.input),
                "gold": split.golds[q.id],
            }
            for q in questions
        ]
    )


def stage_rewards(log_history: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Average each reward the trainer logged (``reward``, ``rewards/*/mean``) over a stage.

    >>> stage_rewards([{"reward": 0.5, "rewards/format/mean": 1.0}, {"reward": 1.0}, {"loss": 2}])
    {'reward': 0.75, 'rewards/format/mean': 1.0}
    """
    keys = [k for row in log_history for k in row if k == "reward" or k.startswith("rewards/")]
    found: dict[str, float] = {}
    for key in dict.fromkeys(keys):
        if key.endswith("/std"):
            continue
        values = [row[key] for row in log_history if key in row]
        found[key] = statistics.fmean(values)
    return found


def train(
    script_args: GRPOScriptArguments,
    training_args: Any,
    model_args: Any,
    *,
    base_model: Any = None,
    embeddings: Any = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the curriculum; save the adapter, ``rpo_settings.json``, ``recipe.yaml`` and
    ``metrics.json``; return the metrics."""
    from peft import PeftModel
    from trl import GRPOTrainer

    started = time.perf_counter()
    avoid_emulated_bf16(training_args)
    split = load_split(
        script_args.questions, script_args.outputs, script_args.task, script_args.limit
    )
    drafts = zero_drafts(
        script_args.questions, script_args.outputs, script_args.drafts_dir, task=script_args.task,
        limit=script_args.limit, base_model=base_model, base_model_path=script_args.base_model,
        progress=progress,
    )  # fmt: skip
    recall = recall_for(script_args, split, embeddings)
    model, tokenizer = load_model_and_tokenizer(model_args)
    peft_config = None
    if script_args.sft_adapter:
        model = PeftModel.from_pretrained(model, script_args.sft_adapter, is_trainable=True)
    else:
        peft_config = peft_config_for(model_args)
    steps = script_args.steps_per_stage
    schedule: list[CurriculumStage] = curriculum(
        script_args.curriculum_ks, steps[0] if len(steps) == 1 else steps
    )
    output_dir = Path(training_args.output_dir)
    per_step = prompts_per_step(training_args)
    orders = stage_orders(len(split.questions), schedule, per_step, training_args.seed)
    stages, drawn = [], set()
    for stage, order in zip(schedule, orders, strict=True):
        stage_started = time.perf_counter()
        args = copy.deepcopy(training_args)
        args.max_steps = stage.steps
        args.shuffle_dataset = False  # the order is the stage's rotation of the run's shuffle
        args.output_dir = str(output_dir / f"stage{stage.index}_k{stage.k}")
        stage_ids = [split.questions[i].id for i in order[: stage.steps * per_step]]
        drawn.update(stage_ids)
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=make_reward_funcs(split.spec),
            args=args,
            train_dataset=stage_dataset(split, drafts, recall, stage.k, order),
            processing_class=tokenizer,
            peft_config=peft_config,
        )
        trainer.train()
        model, peft_config = trainer.model, None  # the policy carries over to the next stage
        rewards = stage_rewards(trainer.state.log_history)
        stages.append(
            {
                "stage": stage.index,
                "k": stage.k,
                "steps": trainer.state.global_step,
                "questions": len(stage_ids),  # a slice of one permutation: all distinct
                "seconds": round(time.perf_counter() - stage_started, 1),
                **rewards,
                "log_history": trainer.state.log_history,
            }
        )
        shown = ", ".join(f"{key}={value:.4f}" for key, value in rewards.items())
        print(
            f"GRPO stage {stage.index} (k={stage.k}, {stage.steps} steps): {shown}", file=sys.stderr
        )
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    script_args.adapter_settings().write(output_dir)  # what inference should default to
    metrics = {
        "questions": len(split.questions),
        "questions_drawn": len(drawn),
        "stages": stages,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    save_run(
        output_dir,
        {
            "script": asdict(script_args),
            "model": asdict(model_args),
            "training": training_args.to_dict(),
        },
        metrics,
        [],
    )
    return metrics


def make_parser() -> Any:
    """Return the TRL parser over the script, GRPO and model dataclasses (YAML ``--config``)."""
    from trl import GRPOConfig, ModelConfig, TrlParser

    return TrlParser((GRPOScriptArguments, GRPOConfig, ModelConfig))


def main(argv: Sequence[str] | None = None, **kwargs: Any) -> dict[str, Any]:
    """Parse the recipe and the command line, run the curriculum, save; return the metrics."""
    script_args, training_args, model_args = make_parser().parse_args_and_config(args=argv)
    metrics = train(script_args, training_args, model_args, **kwargs)
    print(f"GRPO done in {metrics['wall_seconds']} s; adapter in {training_args.output_dir}",
          file=sys.stderr)  # fmt: skip
    return metrics


if __name__ == "__main__":
    main()
