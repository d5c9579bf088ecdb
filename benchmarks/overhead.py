"""Benchmark 2: pipeline overhead of RPORewriter.invoke over the reflection model's generation.

Run from the repository root::

    python -m benchmarks.overhead                  # 8 PEP dev questions, 64 new tokens
    python -m benchmarks.overhead --n 2 --max-new-tokens 8   # seconds (smoke test)

Set-up: SmolLM2-135M-Instruct on CPU (offline, no adapter: ``ReflectionModel.from_pretrained(
adapter=False)``) is both the base model, whose drafts are made once beforehand, and the
reflection model. Each PEP dev question's profile is in a ``UserHistoryStore`` (all-MiniLM-L6-v2).
Each request is ``rewriter.invoke({"query", "recall_query", "draft"}, config=user)``, post hoc.

Inside every invoke the benchmark times the Hugging Face ``model.generate`` calls (the reflection
model's own generation: prefill and decoding) and the MiniLM ``encode`` of the recall query. The
pipeline overhead is ``invoke - generate``: recall (query embedding and FAISS search), building
the prompt, the chat template and tokenization, decoding, parsing, LangChain callbacks and
config handling. Its share is reported per request (p50, p95) and over all requests.

A short generation (``--max-new-tokens 64``) is the hard case for this ratio: the overhead is a
fixed cost per request, so longer generations only shrink its share.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from benchmarks._common import (
    Timer,
    fmt_ms,
    fmt_s,
    p50,
    p95,
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

TARGET_SHARE = 0.05


def main(argv: list[str] | None = None, *, reflection: Any = None, embeddings: Any = None) -> int:
    """Run the benchmark; ``reflection`` and ``embeddings`` replace the real models (tests)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=8, help="PEP dev questions (one invoke each).")
    parser.add_argument("--k", type=int, default=4, help="History items recalled.")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="Reflection token cap.")
    args = parser.parse_args(argv)

    from langchain_rpo.embeddings import SentenceTransformerEmbeddings
    from langchain_rpo.rewriter import RPO_METADATA_KEY, RPORewriter

    questions = pep_questions("dev", args.n)
    if reflection is None:
        model, which = load_smollm2(adapter=False, max_new_tokens=args.max_new_tokens)
    else:
        model, which = reflection, f"injected {type(reflection.model).__name__}"
    drafts = base_drafts(model, questions)
    store = pep_store(questions, embeddings)
    rewriter = RPORewriter(history=store, reflection=model, k=args.k)
    inputs, configs = rewriter_inputs(questions, drafts)

    print_header(
        "Benchmark 2: pipeline overhead (RPORewriter.invoke minus the model's generate)",
        {
            "model (base and reflection)": which,
            "embeddings": "all-MiniLM-L6-v2 (offline)",
            "requests": f"{len(questions)} PEP dev questions, one invoke each, post hoc",
            "k": args.k,
            "max_new_tokens": args.max_new_tokens,
            **torch_settings(),
        },
        packages=["torch", "transformers", "sentence-transformers", "langchain-core"],
    )

    gen_timer, embed_timer = Timer(), Timer()
    hf = model.model
    hf.generate = gen_timer.wrap(hf.generate)  # instance attribute: shadows the method
    emb = store.embeddings
    if isinstance(emb, SentenceTransformerEmbeddings):
        emb.model.encode = embed_timer.wrap(emb.model.encode)

    rewriter.invoke(inputs[0], configs[0])  # warm-up (first-call caches, lazy imports)
    rows, totals, gens, embeds, shares, tokens = [], [], [], [], [], []
    for i, (x, cfg) in enumerate(zip(inputs, configs, strict=True)):
        gen_timer.reset()
        embed_timer.reset()
        start = time.perf_counter()
        out = rewriter.invoke(x, cfg)
        total = time.perf_counter() - start
        meta = out.response_metadata[RPO_METADATA_KEY]
        overhead = total - gen_timer.total
        totals.append(total)
        gens.append(gen_timer.total)
        embeds.append(embed_timer.total)
        shares.append(overhead / total)
        raw = meta.get("raw_reflection") or ""
        n_tok = len(model.tokenizer(raw, add_special_tokens=False)["input_ids"])
        tokens.append(n_tok)
        rows.append(
            [
                i + 1,
                fmt_s(total),
                fmt_s(gen_timer.total),
                fmt_ms(embed_timer.total),
                fmt_ms(overhead - embed_timer.total),
                fmt_ms(overhead),
                f"{100 * overhead / total:.2f}%",
                n_tok,
                "yes" if meta["personalized"] else f"no ({meta['fallback_reason']})",
            ]
        )
    print_table(
        [
            "request",
            "invoke s",
            "generate s",
            "query embedding ms",
            "other pipeline ms",
            "overhead ms",
            "overhead share",
            "new tokens",
            "personalized",
        ],
        rows,
    )
    overall = (sum(totals) - sum(gens)) / sum(totals)
    print_table(
        ["measure", "p50", "p95", "all requests"],
        [
            ["invoke s", fmt_s(p50(totals)), fmt_s(p95(totals)), fmt_s(sum(totals))],
            ["generate s", fmt_s(p50(gens)), fmt_s(p95(gens)), fmt_s(sum(gens))],
            [
                "overhead ms (invoke - generate)",
                fmt_ms(p50([t - g for t, g in zip(totals, gens)])),
                fmt_ms(p95([t - g for t, g in zip(totals, gens)])),
                fmt_ms(sum(totals) - sum(gens)),
            ],
            [
                "overhead share",
                f"{100 * p50(shares):.2f}%",
                f"{100 * p95(shares):.2f}%",
                f"{100 * overall:.2f}%",
            ],
        ],
    )
    print_table(
        ["target", "measured (p95 of per-request shares)", "verdict"],
        [
            [
                f"overhead <= {100 * TARGET_SHARE:.0f}%",
                f"{100 * p95(shares):.2f}%",
                verdict(p95(shares) <= TARGET_SHARE),
            ]
        ],
    )
    print_footer()
    return 0


if __name__ == "__main__":
    sys.exit(main())
