"""Benchmark 4: ingestion, items per second added to a store against raw sentence-transformers.

Run from the repository root::

    python -m benchmarks.ingest                   # 128 PEP profile texts, 3 rounds
    python -m benchmarks.ingest --texts 16 --repeats 1   # seconds (smoke test)

The texts are PEP profile items (title and abstract, as the LaMP harness indexes them), the
first ``--texts`` distinct ones of the bundled set, ingested in calls of ``--chunk`` texts.
Variants, on the same loaded all-MiniLM-L6-v2 and the same texts, alternate call by call (chunk
1: A B C, chunk 2: B C A, ...), so a burst of load from other processes hits them alike; a
round sends every text through every variant, after one warm-up round:

- **raw encode**: ``SentenceTransformer.encode(texts)`` with its defaults, what a user would
  call to embed the texts by hand (nothing stored);
- **store.add_texts**: ``UserHistoryStore.add_texts(user, chunk)`` into a store (fresh each
  round): embedding, normalisation, ids, the JSON docstore and the FAISS index;
- **store.add_texts, per user** (for reference): each chunk's texts split by their user in the
  data (one ``add_texts`` call per user), the shape of a real import; smaller calls batch less.

The ratio is items/s of the store over items/s of the raw encode, per round, summarised by
the median.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from typing import Any

from benchmarks._common import (
    fmt_s,
    p50,
    print_footer,
    print_header,
    print_table,
    verdict,
)
from benchmarks._pep import PEP_DIR

TARGET_RATIO = 0.9


def pep_texts(limit: int) -> list[tuple[str, str]]:
    """Distinct (user, text) pairs of PEP profile items, in file order (train, then dev)."""
    from langchain_rpo.lamp.tasks import get_task

    spec = get_task("LaMP_5")
    seen, out = set(), []
    for split in ("train", "dev"):
        questions = json.loads((PEP_DIR / f"{split}_questions.json").read_text(encoding="utf-8"))
        for q in questions:
            for item in q["profile"]:
                if item["id"] in seen:
                    continue
                seen.add(item["id"])
                out.append((q.get("user") or q["id"], spec.corpus_text(item)))
                if len(out) >= limit:
                    return out
    return out


def main(argv: list[str] | None = None, *, embeddings: Any = None) -> int:
    """Run the benchmark; ``embeddings`` (a ``SentenceTransformerEmbeddings``) replaces MiniLM."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=128, help="Texts ingested per run.")
    parser.add_argument("--repeats", type=int, default=3, help="Interleaved rounds.")
    parser.add_argument(
        "--chunk", type=int, default=32, help="Texts per call (the variants alternate per call)."
    )
    parser.add_argument(
        "--no-per-user", action="store_true", help="Skip the per-user reference variant."
    )
    args = parser.parse_args(argv)

    import torch

    from langchain_rpo.embeddings import SentenceTransformerEmbeddings
    from langchain_rpo.history import UserHistoryStore

    pairs = pep_texts(args.texts)
    texts = [t for _, t in pairs]
    by_user: dict[str, list[str]] = defaultdict(list)
    for user, text in pairs:
        by_user[user].append(text)
    if embeddings is None:
        embeddings = SentenceTransformerEmbeddings()
    model = embeddings.model  # loaded once, shared by every variant

    print_header(
        "Benchmark 4: ingestion (UserHistoryStore.add_texts vs raw SentenceTransformer.encode)",
        {
            "embeddings": "all-MiniLM-L6-v2 (offline), one loaded model shared by all variants",
            "texts": f"{len(texts)} PEP profile items (title + abstract), "
            f"mean {sum(map(len, texts)) / len(texts):.0f} chars, {len(by_user)} users",
            "raw encode": "model.encode(texts) (defaults: batch_size=32)",
            "store": f"add_texts (embeddings batch_size={embeddings.batch_size}, normalised)",
            "calls": f"chunks of {args.chunk} texts, the variants alternating call by call",
            "rounds": args.repeats,
            "torch threads": torch.get_num_threads(),
        },
        packages=["torch", "sentence-transformers", "faiss-cpu"],
    )

    chunks = [pairs[i : i + args.chunk] for i in range(0, len(pairs), args.chunk)]

    def raw(chunk: list[tuple[str, str]], _: dict) -> None:
        model.encode([t for _, t in chunk])

    def store_one_call(chunk: list[tuple[str, str]], stores: dict) -> None:
        stores["one"].add_texts("user", [t for _, t in chunk])

    def store_per_user(chunk: list[tuple[str, str]], stores: dict) -> None:
        grouped: dict[str, list[str]] = defaultdict(list)
        for user, text in chunk:
            grouped[user].append(text)
        for user, user_texts in grouped.items():
            stores["per_user"].add_texts(user, user_texts)

    variants = {"raw encode": raw, "store.add_texts": store_one_call}
    if not args.no_per_user:
        variants["store.add_texts, per user"] = store_per_user
    names = list(variants)

    def one_round(r: int) -> dict[str, float]:
        """All texts through every variant, chunk by chunk, the order rotating per chunk."""
        stores = {"one": UserHistoryStore(embeddings), "per_user": UserHistoryStore(embeddings)}
        total = dict.fromkeys(names, 0.0)
        for c, chunk in enumerate(chunks):
            shift = (c + r) % len(names)
            for name in names[shift:] + names[:shift]:
                start = time.perf_counter()
                variants[name](chunk, stores)
                total[name] += time.perf_counter() - start
        return total

    one_round(0)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.repeats):
        for name, seconds in one_round(r).items():
            times[name].append(seconds)

    n = len(texts)
    rows = [
        [name, " / ".join(fmt_s(x) for x in t), fmt_s(p50(t)), f"{n / p50(t):.1f}"]
        for name, t in times.items()
    ]
    print_table(["variant", "seconds per round", "p50 s", "items/s"], rows)
    ratios = [r / s for r, s in zip(times["raw encode"], times["store.add_texts"], strict=True)]
    ratio_rows = [
        [
            "store.add_texts / raw encode",
            f"{p50(ratios):.3f}x",
            " / ".join(f"{r:.3f}" for r in ratios),
            verdict(p50(ratios) >= TARGET_RATIO),
        ]
    ]
    if "store.add_texts, per user" in times:
        per_user = [
            r / s
            for r, s in zip(times["raw encode"], times["store.add_texts, per user"], strict=True)
        ]
        ratio_rows.append(
            [
                "store.add_texts per user / raw encode (reference)",
                f"{p50(per_user):.3f}x",
                " / ".join(f"{r:.3f}" for r in per_user),
                "-",
            ]
        )
    print_table(
        ["throughput ratio", "median of rounds", "per round", f"target >= {TARGET_RATIO}x"],
        ratio_rows,
    )
    print_footer()
    return 0


if __name__ == "__main__":
    sys.exit(main())
