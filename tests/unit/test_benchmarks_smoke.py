"""Smoke tests of the benchmark commands at their smallest sizes, with tiny in-process models.

They check that each command runs end to end and prints its tables and target verdicts; the
numbers themselves come from the real runs recorded in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import numpy as np
import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding

from benchmarks import _common


class FakeSentenceTransformer:
    """Stands in for a loaded SentenceTransformer: deterministic vectors, no model."""

    def encode(self, texts, batch_size=32, normalize_embeddings=False, **kwargs):
        rng = np.random.default_rng(len(texts))
        out = rng.standard_normal((len(texts), 8)).astype(np.float32)
        if normalize_embeddings:
            out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out

    def get_embedding_dimension(self) -> int:
        return 8


def test_common_percentiles_and_table(capsys) -> None:
    assert _common.percentile([1, 2, 3, 4], 50) == 2.5
    assert _common.p95([1.0] * 19 + [21.0]) == pytest.approx(2.0)
    times = _common.interleave({"a": lambda: None, "b": lambda: None}, repeats=3, warmup=1)
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}
    _common.print_table(["x", "y"], [[1, "two"]])
    assert "| 1 | two |" in capsys.readouterr().out
    assert "cpu" in _common.machine_info()


def test_recall_smoke(capsys) -> None:
    pytest.importorskip("langchain_community")
    from benchmarks import recall

    assert recall.main(["--users", "3", "--items", "20,50", "--queries", "4", "--k", "3"]) == 0
    out = capsys.readouterr().out
    assert "UserHistoryStore (per-user exact index)" in out
    assert "fetch_k=all vectors" in out and "target: recall 1.0" in out
    # Exact stores find exactly the brute-force neighbours.
    for line in out.splitlines():
        if "UserHistoryStore (per-user" in line or "fetch_k=all vectors" in line:
            assert "| 1.000 " in line, line


def test_overhead_smoke(random_reflection, capsys) -> None:
    from benchmarks import overhead

    emb = DeterministicFakeEmbedding(size=16)
    assert overhead.main(["--n", "2"], reflection=random_reflection, embeddings=emb) == 0
    out = capsys.readouterr().out
    assert "overhead share" in out and "overhead <= 5%" in out


def test_batching_smoke(random_reflection, capsys) -> None:
    from benchmarks import batching

    emb = DeterministicFakeEmbedding(size=16)
    args = ["--n", "2", "--repeats", "1"]
    assert batching.main(args, reflection=random_reflection, embeddings=emb) == 0
    out = capsys.readouterr().out
    assert "| batch " in out and "| sequential " in out and ">= 2x" in out


def test_reasoning_smoke(taught_reflection, capsys) -> None:
    from benchmarks import reasoning

    emb = DeterministicFakeEmbedding(size=16)
    assert reasoning.main(["--n", "2"], reflection=taught_reflection, embeddings=emb) == 0
    out = capsys.readouterr().out
    assert "| full trajectory " in out and "| rewrite alone " in out
    assert "new tokens, full / rewrite alone" in out


def test_reasoning_against_a_rewrite_only_adapter(taught_reflection, random_reflection, capsys):
    """The ablation's form: a second model answers the product prompt itself, timed alongside."""
    from benchmarks import reasoning

    emb = DeterministicFakeEmbedding(size=16)
    code = reasoning.main(
        ["--n", "2"], reflection=taught_reflection, embeddings=emb, rewrite_only=random_reflection
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "full trajectory vs rewrite-only adapter" in out
    assert "| rewrite-only adapter " in out and "| rewrite alone " not in out
    assert "new tokens, full / rewrite-only adapter" in out


def test_ingest_smoke(capsys) -> None:
    from benchmarks import ingest
    from langchain_rpo.embeddings import SentenceTransformerEmbeddings

    embeddings = SentenceTransformerEmbeddings("fake-model")
    embeddings._model = FakeSentenceTransformer()
    assert ingest.main(["--texts", "6", "--repeats", "2", "--chunk", "2"], embeddings=embeddings) == 0
    out = capsys.readouterr().out
    assert "store.add_texts / raw encode" in out and "target >= 0.9x" in out


def test_train_throughput_smoke(tmp_path, taught_model, tiny_tokenizer, capsys) -> None:
    pytest.importorskip("trl")
    from benchmarks import train_throughput

    model_dir = tmp_path / "tiny"
    taught_model.save_pretrained(model_dir)
    tiny_tokenizer.save_pretrained(model_dir)
    argv = ["--steps", "2", "--rounds", "1", "--records", "4", "--model", str(model_dir)]
    argv += ["--lora-layers", "1"]  # the recipe names SmolLM2 layers; the tiny model has 2
    argv += ["--dataset", str(tmp_path / "absent.jsonl")]  # build the records here
    assert train_throughput.main(argv) == 0
    out = capsys.readouterr().out
    assert "| training/sft.py " in out and "| bare TRL SFTTrainer " in out
    assert "target >= 0.95x" in out


def test_train_throughput_records_match_the_build_trajectories_format() -> None:
    pytest.importorskip("trl")
    from benchmarks.train_throughput import build_records

    records = build_records(3)
    assert len(records) == 3
    for record in records:
        assert [m["role"] for m in record["prompt"]] == ["system", "user"]
        assert record["completion"][0]["role"] == "assistant"
        assert "<rewrite>" in record["completion"][0]["content"]


def test_compare_runs_bootstraps_the_gain_of_b_over_a(tmp_path, capsys) -> None:
    import json

    from benchmarks import compare_runs

    titles = ["Data Classes", "Lazy Imports", "API Hooks"]
    golds = {f"q{i}": title for i, title in enumerate(titles)}
    runs = {
        "golds": golds,
        "a": {"q0": "Classes", "q1": "Imports", "q2": "Hooks"},  # ROUGE-L 2/3 each
        "b": {"q0": "Data Classes", "q1": "Lazy Imports", "q2": "Hooks"},  # 1, 1, 2/3
    }
    for name, outputs in runs.items():
        records = [{"id": qid, "output": text} for qid, text in outputs.items()]
        (tmp_path / f"{name}.json").write_text(json.dumps({"task": "LaMP_5", "golds": records}))
    args = [f"--{name}={tmp_path / name}.json" for name in runs]
    gains = compare_runs.main([*args, "--resamples", "200"])
    by_metric = {g.metric: g for g in gains}
    assert set(by_metric) == {"rouge-1", "rouge-L"}
    rouge_l = by_metric["rouge-L"]
    assert rouge_l.a == pytest.approx(2 / 3) and rouge_l.b == pytest.approx(8 / 9)
    assert rouge_l.gain == pytest.approx(1 / 3) and rouge_l.better == (2, 0, 1)
    assert 0 <= rouge_l.low <= rouge_l.gain <= rouge_l.high <= 0.5  # at most 2 of 3 gain 50%
    assert rouge_l.p_target > 0.85  # below +10% only when a resample draws q2 alone: 1/27
    assert "| rouge-L | 0.6667 | 0.8889 | +33.3%" in capsys.readouterr().out
    one = {"task": "LaMP_5", "golds": [{"id": "q0", "output": "x"}]}
    (tmp_path / "b.json").write_text(json.dumps(one))
    with pytest.raises(ValueError, match="ids differ"):
        compare_runs.main([*args, "--resamples", "10"])
