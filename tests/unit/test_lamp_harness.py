"""``rpo eval`` with LangChain's fake chat models: outputs, resume, retrieval, RPO, scoring."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models import FakeListChatModel
from langchain_core.messages import BaseMessage
from pydantic import Field

from langchain_rpo.cli import main
from langchain_rpo.lamp.data import Question, iter_questions, read_outputs
from langchain_rpo.lamp.harness import EvalConfig, parse_methods, run_eval
from langchain_rpo.lamp.methods import BM25Retriever, ContextInjection, DenseRetriever, Nearest
from langchain_rpo.lamp.metrics import evaluate
from langchain_rpo.lamp.tasks import get_task

PREFIX = "Generate a title for the following abstract of a paper: "
TOPICS = [
    "packaging wheels",
    "async generators",
    "type hints",
    "pattern matching",
    "garbage collection",
]


class RecordingModel(FakeListChatModel):
    """A fake chat model that records its prompts and answers with the prompt's last word."""

    responses: list[str] = Field(default_factory=lambda: ["unused"])
    prompts: list[str] = Field(default_factory=list)
    fail_after: int | None = None
    lock: Any = Field(default_factory=threading.Lock, exclude=True)

    def _call(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> str:
        prompt = str(messages[-1].content)
        with self.lock:
            if self.fail_after is not None and len(self.prompts) >= self.fail_after:
                raise RuntimeError("model crashed")
            self.prompts.append(prompt)
        return f'Title: "Improving {prompt.split()[-1]}"'


def make_split(folder: Path, n: int = 5) -> tuple[Path, Path]:
    """A LaMP-5 split: question i is about TOPICS[i]; its profile holds the matching item."""
    questions, golds = [], []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        profile = [
            {
                "id": f"{i}-{j}",
                "title": f"Old {other.title()}",
                "abstract": f"A proposal about {other} in detail.",
            }
            for j, other in enumerate(TOPICS)
            if other != topic or j == i  # keep the matching item
        ]
        if i == n - 1:
            profile = []  # a user without history
        questions.append(
            {
                "id": f"q{i}",
                "input": f"{PREFIX}We change {topic} for everyone {topic.split()[-1]}",
                "profile": profile,
            }
        )
        golds.append({"id": f"q{i}", "output": f"Improving {topic.split()[-1]}"})
    q = folder / "dev_questions.json"
    o = folder / "dev_outputs.json"
    q.write_text(json.dumps(questions))
    o.write_text(json.dumps({"task": "LaMP_5", "golds": golds}))
    return q, o


@pytest.fixture
def split(tmp_path: Path) -> tuple[Path, Path]:
    return make_split(tmp_path)


def config(split: tuple[Path, Path], out: Path, **changes: Any) -> EvalConfig:
    base = EvalConfig(
        questions=split[0],
        outputs=split[1],
        out=out,
        methods=("zero", "rag", "nearest"),
        k=2,
        batch_size=2,
    )
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def test_eval_writes_predictions_metrics_table_and_chart(
    split: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    model = RecordingModel()
    result = run_eval(config(split, out), base_model=model, progress=False)

    assert set(result.metrics) == {"zero", "rag", "nearest"} and result.n == 5
    for method in ("zero", "rag", "nearest"):
        preds = read_outputs(out / f"{method}_outputs.json", "LaMP_5")
        assert list(preds.outputs) == [f"q{i}" for i in range(5)]
    zero = read_outputs(out / "zero_outputs.json").outputs
    assert (
        zero["q0"] == "Improving wheels"
    )  # the answer mapped by parse_answer (prefix, quotes gone)
    assert result.metrics["zero"]["rouge-1"] == pytest.approx(1.0)
    nearest = read_outputs(out / "nearest_outputs.json").outputs
    assert nearest["q1"] == "Old Async Generators" and nearest["q4"] == ""

    summary = json.loads((out / "metrics.json").read_text())
    assert summary["metrics"] == result.metrics and summary["n"] == 5
    assert summary["settings"]["k"] == 2
    table = (out / "results.md").read_text()
    assert (
        "| zero | **1.0000** | **1.0000** | no |" in table
        and "| rag |" in table
        and "| nearest |" in table
    )
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # zero and rag each asked the model once per question, nothing more.
    assert len(model.prompts) == 10


def test_rag_prompt_holds_the_top_k_items_in_lamp_templates(
    split: tuple[Path, Path], tmp_path: Path
) -> None:
    model = RecordingModel()
    run_eval(
        config(split, tmp_path / "run", methods=("rag",), k=1), base_model=model, progress=False
    )
    first = next(p for p in model.prompts if p.endswith("wheels"))
    assert first.startswith(
        '"Old Packaging Wheels" is a title for "A proposal about packaging wheels in detail." . '
        "Following the given patterns "
    )
    assert first.count(" is a title for ") == 1
    no_history = next(p for p in model.prompts if "garbage" in p)
    assert no_history.startswith(PREFIX)  # the empty profile gives the zero-shot prompt


def test_k_zero_rag_prompt_is_the_input(split: tuple[Path, Path], tmp_path: Path) -> None:
    model = RecordingModel()
    run_eval(
        config(split, tmp_path / "run", methods=("rag",), k=0), base_model=model, progress=False
    )
    assert all(p.startswith(PREFIX) for p in model.prompts)


def test_rerun_resumes_from_the_cache(split: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = RecordingModel()
    run_eval(config(split, out, limit=3), base_model=first, progress=False)
    assert len(first.prompts) == 6
    second = RecordingModel()
    result = run_eval(config(split, out), base_model=second, progress=False)
    assert len(second.prompts) == 4  # only q3 and q4, for zero and rag
    assert result.generated == {"zero": 2, "rag": 2, "nearest": 2}
    third = RecordingModel()
    assert run_eval(config(split, out), base_model=third, progress=False).metrics == result.metrics
    assert third.prompts == []


def test_an_interrupted_run_continues_where_it_stopped(
    split: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    crashing = RecordingModel(fail_after=3)
    with pytest.raises(RuntimeError, match="model crashed"):
        run_eval(
            config(split, out, methods=("zero",), batch_size=1), base_model=crashing, progress=False
        )
    assert len((out / "cache" / "zero.jsonl").read_text().splitlines()) == 3
    resumed = RecordingModel()
    result = run_eval(
        config(split, out, methods=("zero",), batch_size=1), base_model=resumed, progress=False
    )
    assert len(resumed.prompts) == 2 and result.generated == {"zero": 2}


def test_a_changed_setting_invalidates_only_what_depends_on_it(
    split: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    run_eval(config(split, out), base_model=RecordingModel(), progress=False)
    model = RecordingModel()
    result = run_eval(config(split, out, k=1), base_model=model, progress=False)
    assert result.generated == {"zero": 0, "rag": 5, "nearest": 0}
    fresh = RecordingModel()
    assert (
        run_eval(config(split, out, k=1, fresh=True), base_model=fresh, progress=False).generated[
            "zero"
        ]
        == 5
    )


def test_limit_questions_need_golds(split: tuple[Path, Path], tmp_path: Path) -> None:
    golds = json.loads(split[1].read_text())
    golds["golds"] = golds["golds"][1:]
    split[1].write_text(json.dumps(golds))
    with pytest.raises(ValueError, match=r"1 questions have no output \(e.g. \['q0'\]\)"):
        run_eval(
            config(split, tmp_path / "run", limit=2), base_model=RecordingModel(), progress=False
        )


def test_retrievers_rank_the_matching_item_first(split: tuple[Path, Path]) -> None:
    spec = get_task("LaMP_5")
    questions = list(iter_questions(split[0], spec))
    bm25 = BM25Retriever(spec).top_k(questions, 2)
    for question, ranked in zip(questions[:4], bm25[:4], strict=True):
        topic = question.input.split("We change ")[1].split(" for")[0]
        assert topic in question.profile[ranked[0]]["abstract"]
        assert len(ranked) == 2
    assert bm25[4] == []
    # Dense: the store ranks by embeddings; a fake embedding maps equal texts to equal vectors.
    exact = Question(
        id="x",
        input=f"{PREFIX}needle x",
        profile=({"title": "A", "abstract": "hay"}, {"title": "needle", "abstract": "x"}),
    )
    dense = DenseRetriever(spec, lambda: DeterministicFakeEmbedding(size=16))
    assert dense.top_k([exact], 1) == [[1]]  # its corpus text "needle x" is the query itself
    assert dense.top_k([exact], 0) == [[]]


def test_nearest_refuses_a_task_without_item_outputs() -> None:
    with pytest.raises(ValueError, match="nearest"):
        Nearest(get_task("LaMP_1"), BM25Retriever(get_task("LaMP_1")))


def test_context_injection_settings_change_its_signature() -> None:
    spec = get_task("LaMP_5")
    make = lambda k: ContextInjection(spec, RecordingModel, {"m": 1}, BM25Retriever(spec), k)  # noqa: E731
    assert make(2).signature() == make(2).signature() != make(3).signature()


def test_parse_methods() -> None:
    assert parse_methods("zero, rag,rpo") == ("zero", "rag", "rpo")
    with pytest.raises(ValueError, match="unknown methods"):
        parse_methods("zero,best")
    with pytest.raises(ValueError, match="twice"):
        parse_methods("zero,zero")


def test_score_cli_matches_the_metric_functions(
    split: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    result = run_eval(config(split, out), base_model=RecordingModel(), progress=False)
    capsys.readouterr()
    for method in ("zero", "rag", "nearest"):
        target = tmp_path / f"{method}.json"
        assert (
            main(
                [
                    "lamp",
                    "score",
                    "--golds",
                    str(split[1]),
                    "--preds",
                    str(out / f"{method}_outputs.json"),
                    "--json",
                    str(target),
                ]
            )
            == 0
        )
        printed = capsys.readouterr().out
        scored = json.loads(target.read_text())
        assert scored == {"task": "LaMP_5", "metrics": result.metrics[method]}
        assert f"rouge-1: {result.metrics[method]['rouge-1']:.4f}" in printed
        preds = read_outputs(out / f"{method}_outputs.json").outputs
        assert scored["metrics"] == evaluate("LaMP_5", preds, read_outputs(split[1]).outputs)


def test_score_cli_for_ratings_and_its_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    golds = tmp_path / "golds.json"
    preds = tmp_path / "preds.json"
    golds.write_text(
        json.dumps(
            {"task": "LaMP_3", "golds": [{"id": "a", "output": "4"}, {"id": "b", "output": "2"}]}
        )
    )
    preds.write_text(
        json.dumps(
            {"task": "LaMP_3", "golds": [{"id": "a", "output": "5"}, {"id": "b", "output": "n/a"}]}
        )
    )
    assert (
        main(["lamp", "score", "--task", "LaMP_3", "--golds", str(golds), "--preds", str(preds)])
        == 0
    )
    out = capsys.readouterr().out
    # errors 1 and 3 ("n/a" with gold 2 becomes 5): MAE 2, RMSE sqrt(5)
    assert "MAE: 2.0000 (lower is better)" in out and "RMSE: 2.2361" in out
    preds.write_text(json.dumps({"task": "LaMP_3", "golds": [{"id": "a", "output": "5"}]}))
    assert main(["lamp", "score", "--golds", str(golds), "--preds", str(preds)]) == 1
    assert "1 golds have no prediction (e.g. ['b'])" in capsys.readouterr().err


def test_validate_cli(split: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lamp", "validate", "--questions", str(split[0]), "--outputs", str(split[1])]) == 0
    assert "ok: 5 LaMP_5 questions" in capsys.readouterr().out
    assert (
        main(
            [
                "lamp",
                "validate",
                "--task",
                "LaMP_4",
                "--questions",
                str(split[0]),
                "--outputs",
                str(split[1]),
            ]
        )
        == 1
    )


# --------------------------------------------------------------------------- rpo, rpo-base


def test_rpo_personalizes_the_shared_drafts(split: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    base = RecordingModel()
    reflection = FakeListChatModel(
        responses=[
            "<preferences>short</preferences><gaps>long</gaps>"
            "<rewrite>Title: Improving wheels</rewrite>"
        ]
    )
    result = run_eval(
        config(split, out, methods=("zero", "rpo")),
        base_model=base,
        reflection=reflection,
        embeddings=DeterministicFakeEmbedding(size=16),
        progress=False,
    )
    # The base model answered each question once: rpo reused zero's drafts.
    assert len(base.prompts) == 5
    assert len((out / "cache" / "drafts.jsonl").read_text().splitlines()) == 5
    rpo = read_outputs(out / "rpo_outputs.json").outputs
    # Users with history get the rewrite (mapped by parse_answer); the one without keeps the draft.
    assert rpo["q0"] == "Improving wheels" and rpo["q1"] == "Improving wheels"
    assert rpo["q4"] == read_outputs(out / "zero_outputs.json").outputs["q4"]
    records = [json.loads(line) for line in (out / "cache" / "rpo.jsonl").read_text().splitlines()]
    assert records[1]["info"]["draft"] == 'Title: "Improving generators"'
    assert records[0]["info"]["retrieved"] == ["0-0", "0-1"]  # k=2 recalled profile items
    diagnostics = result.diagnostics["rpo"]
    assert diagnostics["personalized_fraction"] == 0.8  # q4 has no history
    assert diagnostics["draft_kept_because"] == {"no_history": 1}


def test_rpo_and_rpo_base_with_the_same_reflection_model_run_once(
    split: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    reflection = RecordingModel()  # no trajectory: every answer falls back to the draft
    result = run_eval(
        # A named reflection model has no bundled adapter: rpo is rpo-base.
        config(split, out, methods=("rpo", "rpo-base"), reflection_model="same-model"),
        base_model=RecordingModel(),
        reflection_base=reflection,
        embeddings=DeterministicFakeEmbedding(size=16),
        progress=False,
    )
    assert result.generated == {"rpo": 5, "rpo-base": 0}
    assert len(reflection.prompts) == 4  # q4 has no history: no reflection call
    # Recalled items reach the reflection model in the LaMP item template.
    assert all('1. "Old ' in p and '" is a title for "A proposal' in p for p in reflection.prompts)
    assert result.diagnostics["rpo"]["draft_kept_because"] == {
        "no_rewrite_block": 4,
        "no_history": 1,
    }
    assert result.metrics["rpo"] == result.metrics["rpo-base"]
    assert "no adapter found" in result.table


# ---------------------------------------------------------------------- reflection candidates


def test_reflection_candidates_reach_the_model_metrics_and_cache_key(
    split: tuple[Path, Path], tmp_path: Path, taught_model: Any, tiny_tokenizer: Any
) -> None:
    from langchain_rpo.reflection import ReflectionModel

    reflection = ReflectionModel.from_model(taught_model, tiny_tokenizer, max_tokens=40)
    seen: list[int] = []
    batch = ReflectionModel.batch

    def recording_batch(self: ReflectionModel, *args: Any, **kwargs: Any) -> Any:
        seen.append(self.candidates)
        return batch(self, *args, **kwargs)

    def run(out: Path, candidates: int) -> Any:
        return run_eval(
            config(split, out, methods=("rpo",), reflection_candidates=candidates, limit=2),
            base_model=RecordingModel(),
            reflection=reflection,
            embeddings=DeterministicFakeEmbedding(size=16),
            progress=False,
        )

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ReflectionModel, "batch", recording_batch)
        result = run(tmp_path / "run", 3)
    assert seen and set(seen) == {3}  # the rpo method's reflection model sampled 3
    assert reflection.candidates == 1  # the caller's model is left as it was
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["settings"]["reflection_candidates"] == 3
    assert summary["settings"]["rpo"]["candidates"] == 3
    assert summary["settings"]["rpo"]["sampling_seed"] == 0
    assert summary["settings"]["reflection"]["candidates"] == 3
    assert "reflection_candidates=3 (mbr)" in result.table.splitlines()[0]
    # The answers are cached under a key that holds the count: a greedy run answers anew.
    assert run(tmp_path / "run", 1).generated == {"rpo": 2}
    assert run(tmp_path / "run", 3).generated == {"rpo": 0}
    assert "reflection_candidates" not in run(tmp_path / "run", 1).table
    # Seeded: a fresh run samples the same candidates, so it gives the same answers.
    assert run(tmp_path / "again", 3).predictions == result.predictions


def test_reflection_candidates_need_a_local_reflection_model(
    split: tuple[Path, Path], tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="needs a local ReflectionModel"):
        run_eval(
            config(split, tmp_path / "run", methods=("rpo",), reflection_candidates=2),
            base_model=RecordingModel(),
            reflection=RecordingModel(),
            progress=False,
        )
    with pytest.raises(ValueError, match="reflection_candidates must be a positive whole"):
        EvalConfig(questions=split[0], outputs=split[1], out=tmp_path, reflection_candidates=0)


def test_the_eval_command_passes_reflection_candidates(
    split: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from langchain_rpo.lamp import harness

    seen: list[EvalConfig] = []

    def fake_run_eval(config: EvalConfig, **kwargs: Any) -> Any:
        seen.append(config)  # the config the command built: no model loads
        return SimpleNamespace(table="", out=config.out)

    monkeypatch.setattr(harness, "run_eval", fake_run_eval)
    argv = ["eval", "--questions", str(split[0]), "--outputs", str(split[1])]
    argv += ["--out", str(tmp_path / "run"), "--methods", "rpo"]
    assert main([*argv, "--reflection-candidates", "4"]) == 0
    assert seen[0].reflection_candidates == 4
    assert main([*argv, "--reflection-candidates", "0"]) != 0  # a usage error, not a run
