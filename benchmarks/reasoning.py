"""Benchmark 5: what the structured reasoning costs per request, in tokens and latency.

Run from the repository root::

    python -m benchmarks.reasoning                 # 16 PEP dev questions, up to 128 new tokens
    python -m benchmarks.reasoning --rewrite-only-adapter bundled   # the two shipped adapters
    python -m benchmarks.reasoning --n 2 --max-new-tokens 8   # seconds (smoke test)

The same reflection model answers the same PEP dev requests (the question's recalled profile
items, the request and the base model's draft) two ways, interleaved request by request:

- **full trajectory**: the product's reflection prompt
  (:func:`langchain_rpo.prompts.build_reflection_messages`), which asks for ``<preferences>``,
  ``<gaps>`` and ``<rewrite>``;
- **rewrite alone**: the same messages with a system prompt that asks for ``<rewrite>`` only;
  or, with ``--rewrite-only-adapter PATH``, a **rewrite-only adapter** (trained on the same
  records with the ``<rewrite>`` block alone as the completion:
  ``training.build_trajectories --rewrite_only_out``) answering the product prompt itself, the
  ablation of the trajectory that issue 14 asks for.

With an adapter, the recalled items are shown as ``rpo eval`` shows them to it: the LaMP-5 item
template with the abstract cut at the adapter's ``max_item_chars`` (``rpo_settings.json``).

Both stop at the first ``</rewrite>`` (the model's default stop string) and are capped at
``--max-new-tokens`` (128 by default; the product default is 256). Generated tokens come from each answer's
``usage_metadata``; latency is the wall time of ``reflection.invoke``. The reflection model is
SmolLM2-135M-Instruct with the shipped trajectory adapter (the one that writes the reasoning;
``--adapter`` another) when the package ships it, else the base model (the header says which):
an untrained base model follows the format loosely, so the share of answers that reach
``</rewrite>`` is reported next to the tokens. ``--rewrite-only-adapter bundled`` names the
bundled (rewrite-only) adapter.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from typing import Any

from langchain_core.messages import SystemMessage

from benchmarks._common import fmt_s, mean, p50, p95, print_footer, print_header, print_table
from benchmarks._pep import (
    base_drafts,
    load_smollm2,
    pep_questions,
    pep_store,
    query_text,
    torch_settings,
)

REWRITE_ONLY_SYSTEM_PROMPT = (
    "You rewrite a draft answer so that it matches what this user would write. "
    "Read the user's past items, then reply in exactly this format:\n"
    "<rewrite>...</rewrite>\n"
    "In <rewrite>, only the rewritten answer."
)
_REWRITE = re.compile(r"<rewrite>(.*?)</rewrite>", re.DOTALL)


def main(
    argv: list[str] | None = None,
    *,
    reflection: Any = None,
    embeddings: Any = None,
    rewrite_only: Any = None,
) -> int:
    """Run the benchmark; ``reflection``, ``embeddings`` and ``rewrite_only`` (the rewrite-only
    adapter's model) replace the real models (tests)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=16, help="PEP dev questions.")
    parser.add_argument("--k", type=int, default=4, help="History items recalled.")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="Token cap per answer.")
    parser.add_argument(
        "--base", action="store_true", help="Use the base model even when an adapter is bundled."
    )
    parser.add_argument(
        "--adapter",
        default=None,
        help="A LoRA adapter folder (default: the shipped trajectory adapter, if any).",
    )
    parser.add_argument(
        "--rewrite-only-adapter",
        default=None,
        help="Compare against this rewrite-only adapter ('bundled': the package's default) on "
        "the product prompt, instead of the same model asked for the rewrite alone.",
    )
    args = parser.parse_args(argv)
    from langchain_rpo import assets

    trajectory = assets.trajectory_adapter_path()
    if args.adapter is None and trajectory is not None:
        args.adapter = str(trajectory)
    if args.rewrite_only_adapter == "bundled":
        bundled = assets.bundled_adapter_path()
        if bundled is None:
            parser.error("--rewrite-only-adapter bundled: the package ships no adapter")
        args.rewrite_only_adapter = str(bundled)

    from langchain_rpo.prompts import build_reflection_messages
    from langchain_rpo.trajectory import try_parse

    questions = pep_questions("dev", args.n)
    if reflection is None:
        reflection, which = load_smollm2(
            adapter=False if args.base else args.adapter, max_new_tokens=args.max_new_tokens
        )
    else:
        which = f"injected {type(reflection.model).__name__}"
    if reflection.adapter_name:
        base, _ = load_smollm2(adapter=False, max_new_tokens=24)
    else:
        base = reflection
    drafts = base_drafts(base, questions)
    del base
    if rewrite_only is None and args.rewrite_only_adapter:
        rewrite_only, _ = load_smollm2(args.rewrite_only_adapter, args.max_new_tokens)
    settings = reflection.adapter_settings
    # With an adapter, its trained cut inside the item template (as rpo eval renders items);
    # without one, the rewriter's default cut of the whole item.
    item_cut = settings.max_item_chars if settings is not None else None
    store = pep_store(questions, embeddings, max_item_chars=item_cut or 300)

    cut = {"max_item_chars": None} if item_cut else {}  # already cut in the item template
    full_msgs, alone_msgs = [], []
    for q, draft in zip(questions, drafts, strict=True):
        items = [d.page_content for d in store.search(q["id"], query_text(q), k=args.k)]
        messages = build_reflection_messages(draft, items, q["input"], **cut)
        full_msgs.append(messages)
        alone_msgs.append([SystemMessage(content=REWRITE_ONLY_SYSTEM_PROMPT), *messages[1:]])
    second = "rewrite-only adapter" if rewrite_only is not None else "rewrite alone"
    models = {"full trajectory": reflection, second: rewrite_only or reflection}

    print_header(
        f"Benchmark 5: reasoning cost (full trajectory vs {second})",
        {
            "reflection model": which,
            "rewrite-only adapter": args.rewrite_only_adapter
            or (
                "injected"
                if rewrite_only is not None
                else "none: the same model, asked for the rewrite alone"
            ),
            "item cut": f"{item_cut} characters of the abstract (the adapter's)"
            if item_cut
            else "the rewriter's default",
            "requests": f"{len(questions)} PEP dev questions (drafts by the base model)",
            "k": args.k,
            "max_new_tokens": args.max_new_tokens,
            **torch_settings(),
        },
        packages=["torch", "transformers", "langchain-core"],
    )

    variants = {
        "full trajectory": full_msgs,
        second: full_msgs if rewrite_only is not None else alone_msgs,
    }
    for name, model in models.items():
        model.invoke(variants[name][0])  # warm-up
    names = list(variants)
    tokens = {n: [] for n in names}
    latency = {n: [] for n in names}
    prompt_tokens = {n: [] for n in names}
    closed = {n: 0 for n in names}
    parsed = {n: 0 for n in names}
    for i in range(len(questions)):
        for name in names if i % 2 == 0 else reversed(names):
            start = time.perf_counter()
            out = models[name].invoke(variants[name][i])
            latency[name].append(time.perf_counter() - start)
            usage = out.usage_metadata or {}
            tokens[name].append(usage.get("output_tokens", 0))
            prompt_tokens[name].append(usage.get("input_tokens", 0))
            text = str(out.content)
            closed[name] += bool(_REWRITE.search(text))
            if name == "full trajectory":
                parsed[name] += try_parse(text)[0] is not None
            else:
                parsed[name] += bool(_REWRITE.search(text))

    n = len(questions)
    rows = []
    for name in names:
        rows.append(
            [
                name,
                f"{mean(prompt_tokens[name]):.0f}",
                f"{mean(tokens[name]):.1f}",
                f"{p50(tokens[name]):.0f}",
                f"{p95(tokens[name]):.0f}",
                sum(t >= args.max_new_tokens for t in tokens[name]),
                f"{closed[name]}/{n}",
                f"{parsed[name]}/{n}",
                fmt_s(mean(latency[name])),
                fmt_s(p50(latency[name])),
                fmt_s(p95(latency[name])),
            ]
        )
    print_table(
        [
            "variant",
            "prompt tokens (mean)",
            "new tokens (mean)",
            "p50",
            "p95",
            "hit the cap",
            "<rewrite> closed",
            "parsed",
            "latency s (mean)",
            "p50",
            "p95",
        ],
        rows,
    )
    full, alone = names
    tok_ratio = mean(tokens[full]) / max(mean(tokens[alone]), 1e-9)
    extra = [a - b for a, b in zip(latency[full], latency[alone], strict=True)]
    lat_ratio = [a / b for a, b in zip(latency[full], latency[alone], strict=True)]
    print_table(
        ["measure", "value"],
        [
            [f"new tokens, full / {alone} (ratio of means)", f"{tok_ratio:.2f}x"],
            [
                "extra new tokens per request (mean)",
                f"{mean(tokens[full]) - mean(tokens[alone]):.1f}",
            ],
            [
                "extra latency per request, s (mean / p50)",
                f"{fmt_s(mean(extra))} / {fmt_s(p50(extra))}",
            ],
            [
                f"latency, full / {alone} (median of per-request ratios)",
                f"{p50(lat_ratio):.2f}x",
            ],
        ],
    )
    print_footer()
    return 0


if __name__ == "__main__":
    sys.exit(main())
