"""Benchmark 3: throughput of RPORewriter.batch over 8 inputs against 8 sequential invokes.

Run from the repository root::

    python -m benchmarks.batching                 # 8 PEP dev questions, 64 new tokens, 2 rounds
    python -m benchmarks.batching --n 2 --max-new-tokens 4 --repeats 1   # seconds (smoke test)

Set-up as in ``benchmarks.overhead``: SmolLM2-135M-Instruct on CPU (offline, no adapter) is the
base model (drafts made once beforehand) and the reflection model; the PEP dev profiles are in a
``UserHistoryStore`` (all-MiniLM-L6-v2); each input names its own user.

The variants run the same inputs, interleaved (A B C, C B A, ...), after a one-request
warm-up. ``batch`` makes one recall batch (one MiniLM ``encode``) and decodes all inputs
together (``langchain_rpo.batched_decoding``: each prompt prefilled on its own after the prefix
they share, a pre-allocated cache, rows leaving the batch as they stop); ``invoke`` in a loop does
everything once per input. A third variant, for reference, is ``batch`` with
``ragged_prefill=False``: one padded ``generate`` call, as before the fixes (on a CPU, prefill is
compute-bound, so padding costs in full, and ``generate`` decodes finished rows until the
longest ends). Throughput is inputs per second; the ratio is computed per round (batch time and
sequential time of the same round) and summarised by its median. "decode s" is the time inside
``generate`` or ``decode_together``: the model's own work, without recall and prompts.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from benchmarks._common import (
    Timer,
    fmt_s,
    interleave,
    p50,
    print_footer,
    print_header,
    print_table,
    verdict,
)
from benchmarks._pep import (
    base_drafts,
    load_smollm2,
    pep_questions,
    pep_store,
    rewriter_inputs,
    torch_settings,
)

TARGET_SPEEDUP = 2.0


def main(argv: list[str] | None = None, *, reflection: Any = None, embeddings: Any = None) -> int:
    """Run the benchmark; ``reflection`` and ``embeddings`` replace the real models (tests)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=8, help="Inputs per batch.")
    parser.add_argument("--k", type=int, default=4, help="History items recalled.")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="Reflection token cap.")
    parser.add_argument("--repeats", type=int, default=2, help="Interleaved rounds.")
    parser.add_argument(
        "--no-padded",
        action="store_true",
        help="Skip the reference variant: batch as one padded generate (ragged_prefill=False).",
    )
    args = parser.parse_args(argv)

    from langchain_rpo import batched_decoding
    from langchain_rpo.rewriter import RPO_METADATA_KEY, RPORewriter

    questions = pep_questions("dev", args.n)
    if reflection is None:
        model, which = load_smollm2(
            adapter=False, max_new_tokens=args.max_new_tokens, batch_size=max(args.n, 1)
        )
    else:
        model, which = reflection, f"injected {type(reflection.model).__name__}"
    drafts = base_drafts(model, questions)
    store = pep_store(questions, embeddings)
    rewriter = RPORewriter(history=store, reflection=model, k=args.k)
    inputs, configs = rewriter_inputs(questions, drafts)

    print_header(
        "Benchmark 3: batching (RPORewriter.batch vs sequential invoke)",
        {
            "model (base and reflection)": which,
            "embeddings": "all-MiniLM-L6-v2 (offline)",
            "inputs": f"{len(questions)} PEP dev questions, each its own user, post hoc",
            "k": args.k,
            "max_new_tokens": args.max_new_tokens,
            "reflection batch_size": model.batch_size,
            "rounds": args.repeats,
            **torch_settings(),
        },
        packages=["torch", "transformers", "sentence-transformers", "langchain-core"],
    )

    gen_timer = Timer()
    hf = model.model
    hf.generate = gen_timer.wrap(hf.generate)
    outputs: dict[str, list] = {}
    gen_time: dict[str, list[float]] = {"batch": [], "batch, padded generate": [], "sequential": []}

    def run_batch() -> None:
        gen_timer.reset()
        outputs["batch"] = rewriter.batch(inputs, configs)
        gen_time["batch"].append(gen_timer.total)

    padded = model.model_copy(update={"ragged_prefill": False})
    padded._model, padded._tokenizer = model.model, model.tokenizer
    padded_rewriter = RPORewriter(history=store, reflection=padded, k=args.k)

    def run_batch_padded() -> None:
        gen_timer.reset()
        outputs["batch, padded generate"] = padded_rewriter.batch(inputs, configs)
        gen_time["batch, padded generate"].append(gen_timer.total)

    def run_sequential() -> None:
        gen_timer.reset()
        outputs["sequential"] = [rewriter.invoke(x, c) for x, c in zip(inputs, configs)]
        gen_time["sequential"].append(gen_timer.total)

    rewriter.invoke(inputs[0], configs[0])  # warm-up: one request, not a whole round
    variants = {"batch": run_batch, "sequential": run_sequential}
    if not args.no_padded:
        variants["batch, padded generate"] = run_batch_padded
    # ReflectionModel.batch looks decode_together up in its module at each call.
    decode_together = batched_decoding.decode_together
    batched_decoding.decode_together = gen_timer.wrap(decode_together)
    try:
        times = interleave(variants, args.repeats, warmup=0)
    finally:
        batched_decoding.decode_together = decode_together

    def new_tokens(answers: list) -> int:
        tok = model.tokenizer
        return sum(
            len(tok(a.response_metadata[RPO_METADATA_KEY]["raw_reflection"] or "")["input_ids"])
            for a in answers
        )

    n = len(inputs)
    ratios = [s / b for s, b in zip(times["sequential"], times["batch"], strict=True)]
    rows = []
    for name in times:
        t = times[name]
        rows.append(
            [
                name,
                " / ".join(fmt_s(x) for x in t),
                fmt_s(p50(t)),
                f"{n / p50(t):.3f}",
                fmt_s(p50(gen_time[name][-len(t) :])),
                new_tokens(outputs[name]),
            ]
        )
    print_table(
        [
            "variant",
            "seconds per round",
            "p50 s",
            "inputs/s",
            "decode s (p50)",
            "new tokens (last round)",
        ],
        rows,
    )
    same = sum(
        a.content == b.content for a, b in zip(outputs["batch"], outputs["sequential"], strict=True)
    )
    print(f"answers identical between batch and sequential: {same}/{n}\n")
    speedup = p50(ratios)
    ratio_rows = [
        [
            "batch / sequential",
            f"{speedup:.2f}x",
            " / ".join(f"{r:.2f}x" for r in ratios),
            verdict(speedup >= TARGET_SPEEDUP),
        ]
    ]
    if "batch, padded generate" in times:
        old_ratios = [
            s / b for s, b in zip(times["sequential"], times["batch, padded generate"], strict=True)
        ]
        ratio_rows.append(
            [
                "batch as one padded generate (before the fixes) / sequential",
                f"{p50(old_ratios):.2f}x",
                " / ".join(f"{r:.2f}x" for r in old_ratios),
                "-",
            ]
        )
    print_table(
        [
            "throughput ratio",
            "median of rounds",
            "per round",
            f"target >= {TARGET_SPEEDUP:.0f}x",
        ],
        ratio_rows,
    )
    print_footer()
    return 0


if __name__ == "__main__":
    sys.exit(main())
