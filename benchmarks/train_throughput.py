"""Benchmark 6: training throughput of training/sft.py against a bare TRL SFTTrainer.

Run from the repository root (needs the ``train`` extra)::

    python -m benchmarks.train_throughput                 # 5 optimizer steps per run, 3 rounds
    python -m benchmarks.train_throughput --steps 1 --records 4 --rounds 1   # smoke test

Both variants train SmolLM2-135M-Instruct (offline, float32, CPU) with the same LoRA and
trainer settings, read from the CPU recipe ``training/recipes/sft_smollm2_135m_cpu.yaml``
(LoRA r 16 on the projections of the layers the recipe names, its batch and accumulation,
max length 1024, completion-only loss; ``--batch-size``, ``--grad-accum`` and ``--lora-layers``
override them for both), for ``--steps`` optimizer steps on the same records:

- **training/sft.py**: ``training.sft.main(["--config", recipe, ...])``, the script itself;
- **bare TRL**: ``SFTTrainer(model, SFTConfig, train_dataset, processing_class, peft_config=
  LoraConfig(...))`` built by hand from the same recipe values, as a user would without the
  script.

Both read one recipe: the CPU recipe with the benchmark's settings applied (batch, accumulation,
``max_steps``, and ``--lora-layers`` when given), written to a temporary file.

The records are ``--dataset`` (the JSONL that ``training.build_trajectories`` writes) when it
exists, else built here from the bundled PEP train set in the same format: the reflection prompt
over the first ``k`` profile items and a lead-of-abstract draft, and the offline trajectory
(measured preferences and gaps, the gold title as the rewrite) as the completion.

Throughput is samples per second of the optimizer steps after the first (a trainer callback
times each step; the first step carries one-off warm-up), and, for reference, the Trainer's own
``train_samples_per_second`` (whole ``train()``, first step included). Runs are interleaved
(script, bare, bare, script, ...); the ratio is script over bare per round, summarised by the
median.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import fmt_s, p50, print_footer, print_header, print_table, verdict
from benchmarks._pep import PEP_DIR
from langchain_rpo.adapter_settings import LAMP_ITEM_CHARS

TARGET_RATIO = 0.95
REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "training" / "recipes" / "sft_smollm2_135m_cpu.yaml"
DEFAULT_DATASET = REPO / "runs" / "pep_train_trajectories.jsonl"


def build_records(limit: int, k: int = 4) -> list[dict[str, Any]]:
    """SFT records from the bundled PEP train set, in ``training.build_trajectories``' format."""
    from langchain_rpo.lamp.tasks import get_task
    from langchain_rpo.trajectory import render
    from training.build_trajectories import offline_trajectory
    from training.data import reflection_prompt

    spec = get_task("LaMP_5")
    questions = json.loads((PEP_DIR / "train_questions.json").read_text(encoding="utf-8"))
    golds = {
        g["id"]: g["output"]
        for g in json.loads((PEP_DIR / "train_outputs.json").read_text(encoding="utf-8"))["golds"]
    }
    records = []
    for q in questions:
        if not q["profile"]:
            continue
        items = q["profile"][:k]
        draft = " ".join(spec.query_text(q["input"]).split()[:10])
        trajectory = offline_trajectory(spec, items, draft, golds[q["id"]])
        records.append(
            {
                "prompt": reflection_prompt(
                    draft, [spec.render_item(item, LAMP_ITEM_CHARS) for item in items], q["input"]
                ),
                "completion": [{"role": "assistant", "content": render(trajectory)}],
            }
        )
        if len(records) >= limit:
            break
    return records


class _StepTimes:
    """A TrainerCallback factory recording the wall time of each optimizer step."""

    def __init__(self) -> None:
        self.steps: list[float] = []

    def callback(self) -> Any:
        from transformers import TrainerCallback

        owner = self

        class StepTimer(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                self._start = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                owner.steps.append(time.perf_counter() - self._start)

        return StepTimer()


def _timed_trainer_class(recorder: _StepTimes) -> Any:
    """``trl.SFTTrainer`` with the step timer attached (used by both variants alike)."""
    import trl

    base = trl.SFTTrainer

    class TimedSFTTrainer(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.add_callback(recorder.callback())

    return TimedSFTTrainer


def run_script(
    dataset: Path, out: Path, recipe: Path, args: argparse.Namespace, recorder: _StepTimes
) -> dict:
    """training/sft.py, with the step timer patched into ``trl.SFTTrainer``."""
    import trl

    from training import sft

    original = trl.SFTTrainer
    trl.SFTTrainer = _timed_trainer_class(recorder)
    try:
        argv = ["--config", str(recipe), "--dataset", str(dataset), "--output_dir", str(out)]
        if args.model:
            argv += ["--model_name_or_path", args.model]
        return sft.main(argv)
    finally:
        trl.SFTTrainer = original


def run_bare(
    dataset: Path, out: Path, recipe_path: Path, args: argparse.Namespace, recorder: _StepTimes
) -> dict:
    """A bare TRL SFTTrainer built by hand from the recipe's values."""
    import torch
    import yaml
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig

    from langchain_rpo import assets

    recipe = yaml.safe_load(recipe_path.read_text(encoding="utf-8"))
    path = args.model or recipe.get("model_name_or_path") or assets.default_chat_model()
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    rows = [json.loads(line) for line in dataset.read_text(encoding="utf-8").splitlines() if line]
    train = Dataset.from_list(
        [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows]
    )
    config_keys = set(SFTConfig.__dataclass_fields__) - {"output_dir"}
    config = SFTConfig(**{k: v for k, v in recipe.items() if k in config_keys}, output_dir=str(out))
    lora = LoraConfig(
        r=recipe["lora_r"],
        lora_alpha=recipe["lora_alpha"],
        lora_dropout=recipe["lora_dropout"],
        target_modules=recipe["lora_target_modules"],
        layers_to_transform=recipe.get("lora_layers"),
        task_type="CAUSAL_LM",
    )
    trainer_cls = _timed_trainer_class(recorder)
    trainer = trainer_cls(
        model=model, args=config, train_dataset=train, processing_class=tokenizer, peft_config=lora
    )
    result = trainer.train()
    trainer.save_model(str(out))
    return dict(result.metrics)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5, help="Optimizer steps per run.")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="Per-device batch (default: the recipe's)."
    )
    parser.add_argument(
        "--grad-accum", type=int, default=None, help="Accumulation steps (default: the recipe's)."
    )
    parser.add_argument("--rounds", type=int, default=3, help="Interleaved rounds.")
    parser.add_argument("--records", type=int, default=64, help="Records when building them here.")
    parser.add_argument("--dataset", default=str(DEFAULT_DATASET), help="SFT records (JSONL).")
    parser.add_argument(
        "--model", default=None, help="Base model path (default: the packaged SmolLM2)."
    )
    parser.add_argument(
        "--lora-layers",
        default=None,
        help="Override the recipe's lora_layers: comma-separated layer numbers, or 'all'.",
    )
    args = parser.parse_args(argv)

    import torch
    import yaml

    recipe = yaml.safe_load(RECIPE.read_text(encoding="utf-8"))
    args.batch_size = args.batch_size or recipe["per_device_train_batch_size"]
    args.grad_accum = args.grad_accum or recipe["gradient_accumulation_steps"]
    recipe.update(
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum,
        max_steps=args.steps,
        logging_steps=1000,
    )
    if args.lora_layers == "all":
        recipe.pop("lora_layers", None)
    elif args.lora_layers:
        recipe["lora_layers"] = [int(x) for x in args.lora_layers.split(",")]
    with tempfile.TemporaryDirectory(prefix="rpo-bench-sft-") as tmp:
        tmp_path = Path(tmp)
        recipe_path = tmp_path / "recipe.yaml"
        recipe_path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
        dataset = Path(args.dataset)
        if dataset.is_file():
            source = f"{dataset} (training.build_trajectories)"
        else:
            records = build_records(args.records)
            dataset = tmp_path / "records.jsonl"
            dataset.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
            source = (
                f"{len(records)} records built here from the PEP train set (offline trajectories)"
            )
        batch = args.batch_size * args.grad_accum
        print_header(
            "Benchmark 6: training throughput (training/sft.py vs bare TRL SFTTrainer)",
            {
                "model": args.model or "SmolLM2-135M-Instruct (offline), float32, CPU",
                "recipe": str(RECIPE.relative_to(REPO)),
                "LoRA": f"r {recipe['lora_r']}, alpha {recipe['lora_alpha']}, "
                f"dropout {recipe['lora_dropout']}, {len(recipe['lora_target_modules'])} modules, "
                f"layers {recipe.get('lora_layers') or 'all'}",
                "samples per optimizer step": f"{args.batch_size} x {args.grad_accum} = {batch} "
                "(batch x accumulation)",
                "max_length": recipe["max_length"],
                "steps per run": args.steps,
                "rounds": args.rounds,
                "data": source,
                "torch threads": torch.get_num_threads(),
            },
            packages=["torch", "transformers", "trl", "peft", "datasets", "accelerate"],
        )
        variants = {"training/sft.py": run_script, "bare TRL SFTTrainer": run_bare}
        names = list(variants)
        step_rate: dict[str, list[float]] = {n: [] for n in names}
        trainer_rate: dict[str, list[float]] = {n: [] for n in names}
        walls: dict[str, list[float]] = {n: [] for n in names}
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else list(reversed(names)):
                recorder = _StepTimes()
                start = time.perf_counter()
                out = tmp_path / f"out-{r}-{names.index(name)}"
                metrics = variants[name](dataset, out, recipe_path, args, recorder)
                walls[name].append(time.perf_counter() - start)
                timed = recorder.steps[1:] or recorder.steps
                step_rate[name].append(batch * len(timed) / sum(timed))
                trainer_rate[name].append(float(metrics.get("train_samples_per_second", 0.0)))

    rows = [
        [
            name,
            " / ".join(f"{x:.3f}" for x in step_rate[name]),
            f"{p50(step_rate[name]):.3f}",
            f"{p50(trainer_rate[name]):.3f}",
            fmt_s(p50(walls[name])),
        ]
        for name in names
    ]
    print_table(
        [
            "variant",
            "samples/s per round (steps 2..n)",
            "p50 samples/s",
            "Trainer train_samples_per_second (p50)",
            "run wall s incl. load/save (p50)",
        ],
        rows,
    )
    script, bare = names
    ratios = [a / b for a, b in zip(step_rate[script], step_rate[bare], strict=True)]
    trainer_ratios = [
        a / b for a, b in zip(trainer_rate[script], trainer_rate[bare], strict=True) if b
    ]
    print_table(
        ["measure", "median of rounds", "per round", f"target >= {TARGET_RATIO}x"],
        [
            [
                "samples/s, sft.py / bare TRL (steps 2..n)",
                f"{p50(ratios):.3f}x",
                " / ".join(f"{x:.3f}" for x in ratios),
                verdict(p50(ratios) >= TARGET_RATIO),
            ],
            [
                "Trainer train_samples_per_second, sft.py / bare",
                f"{p50(trainer_ratios):.3f}x" if trainer_ratios else "-",
                " / ".join(f"{x:.3f}" for x in trainer_ratios),
                "-",
            ],
        ],
    )
    print_footer()
    return 0


if __name__ == "__main__":
    sys.exit(main())
