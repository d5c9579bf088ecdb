"""Settings travel with the adapter: the file, ReflectionModel, RPORewriter, the bundled adapter."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from tiny_models import TAUGHT_TRAJECTORY

from langchain_rpo import RPORewriter, UserHistoryStore
from langchain_rpo.adapter_settings import (
    DEFAULT_ITEM_CHARS,
    DEFAULT_K,
    DEFAULT_MAX_TOKENS,
    DEFAULT_QUERY_CHARS,
    SETTINGS_FILE,
    AdapterSettings,
)
from langchain_rpo.prompts import build_reflection_messages
from langchain_rpo.reflection import ReflectionModel
from langchain_rpo.trajectory import parse

TRAINED = AdapterSettings(k=2, max_item_chars=80, max_query_chars=500, max_new_tokens=40)


def test_write_then_read_gives_the_same_settings(tmp_path: Path) -> None:
    path = TRAINED.write(tmp_path / "adapter")
    assert path.name == SETTINGS_FILE
    assert json.loads(path.read_text())["version"] == 1
    assert AdapterSettings.read(tmp_path / "adapter") == TRAINED


def test_a_folder_without_the_file_records_nothing(tmp_path: Path) -> None:
    assert AdapterSettings.read(tmp_path) is None
    # The defaults are the library's own: an adapter without the file runs as it always did.
    default = AdapterSettings()
    assert (default.k, default.max_item_chars, default.max_query_chars, default.max_new_tokens) == (
        DEFAULT_K,
        DEFAULT_ITEM_CHARS,
        DEFAULT_QUERY_CHARS,
        DEFAULT_MAX_TOKENS,
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not a valid adapter settings file"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({**TRAINED.to_dict(), "k": -1}), "k must be a whole number >= 0"),
        (json.dumps({**TRAINED.to_dict(), "recall": "magic"}), "recall must be one of"),
        (json.dumps({**TRAINED.to_dict(), "extra": 1}), "unknown keys"),
        (json.dumps({"version": 1}), "missing keys"),
        (json.dumps({**TRAINED.to_dict(), "version": 99}), "upgrade langchain-rpo"),
    ],
)
def test_a_damaged_file_is_a_clear_error_naming_it(
    tmp_path: Path, content: str, problem: str
) -> None:
    (tmp_path / SETTINGS_FILE).write_text(content)
    with pytest.raises(ValueError, match=problem) as caught:
        AdapterSettings.read(tmp_path)
    assert str(tmp_path / SETTINGS_FILE) in str(caught.value)
    assert "Fix:" in str(caught.value)


def test_the_bundled_adapter_records_what_it_was_trained_and_scored_with() -> None:
    from langchain_rpo.assets import bundled_adapter_path

    folder = bundled_adapter_path()
    assert folder is not None
    settings = AdapterSettings.read(folder)
    # Its model card and recipes: abstracts cut at 80, k=4 at eval, 96 tokens, recall by the
    # request, the rewriter's query cut.
    assert settings == AdapterSettings(
        k=4, max_item_chars=80, max_query_chars=1000, max_new_tokens=96, recall="request"
    )


def test_both_shipped_adapters_record_the_same_settings_and_the_trajectory_one_has_a_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from langchain_rpo import assets
    from langchain_rpo.cli import main as rpo
    from langchain_rpo.lamp.harness import EvalConfig

    default, trajectory = assets.bundled_adapter_path(), assets.trajectory_adapter_path()
    assert default is not None and trajectory is not None and default != trajectory
    assert AdapterSettings.read(trajectory) == AdapterSettings.read(default)
    assert assets.shipped_adapter("trajectory") == str(trajectory)
    assert assets.shipped_adapter("runs/my-adapter") == "runs/my-adapter"
    pep = Path(assets.__file__).parent / "data" / "pep_titles"
    config = EvalConfig(
        questions=pep / "dev_questions.json",
        outputs=pep / "dev_outputs.json",
        out=tmp_path / "run",
        adapter="trajectory",
    )
    assert config.adapter == str(trajectory)
    # An installation without it: a one-line error naming the fix, from eval and demo alike.
    monkeypatch.setattr(assets, "_TRAJECTORY_ADAPTER", tmp_path / "gone")
    with pytest.raises(ValueError, match="ships no trajectory adapter.*Fix: reinstall"):
        assets.shipped_adapter("trajectory")
    assert rpo(["demo", "--adapter", "trajectory"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("rpo: error: --adapter trajectory: this installation ships no")
    assert len(err.splitlines()) == 1


# --------------------------------------------------------------------------- ReflectionModel


def _saved_adapter(taught_model, tiny_tokenizer, tmp_path: Path) -> tuple[Path, Path]:
    from peft import LoraConfig, get_peft_model

    base_dir, adapter_dir = tmp_path / "base", tmp_path / "adapter"
    taught_model.save_pretrained(base_dir)
    tiny_tokenizer.save_pretrained(base_dir)
    peft_model = get_peft_model(
        taught_model.__class__.from_pretrained(base_dir),
        LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=True),
    )
    peft_model.save_pretrained(adapter_dir)
    return base_dir, adapter_dir


def test_reflection_model_exposes_the_settings_and_takes_its_budget_from_them(
    taught_model, tiny_tokenizer, tmp_path: Path
) -> None:
    base_dir, adapter_dir = _saved_adapter(taught_model, tiny_tokenizer, tmp_path)
    old = ReflectionModel(model_name=base_dir, adapter_name=adapter_dir, device="cpu")
    assert old.adapter_settings is None and old.max_tokens == DEFAULT_MAX_TOKENS

    TRAINED.write(adapter_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # passing nothing never warns
        model = ReflectionModel.from_pretrained(base_dir, adapter_dir, "cpu")
    assert model.adapter_settings == TRAINED
    assert model.max_tokens == TRAINED.max_new_tokens
    taught_prompt = build_reflection_messages(
        "A draft answer.", ["Rust 1.75 released"], "What is new?"
    )
    assert parse(model.invoke(taught_prompt).content) == TAUGHT_TRAJECTORY

    with pytest.warns(UserWarning, match=r"max_new_tokens=12 differs from the max_new_tokens=40"):
        told = ReflectionModel.from_pretrained(base_dir, adapter_dir, "cpu", max_new_tokens=12)
    assert told.max_tokens == 12
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the same value as trained: no warning
        ReflectionModel(model_name=base_dir, adapter_name=adapter_dir, device="cpu", max_tokens=40)
    # Without the adapter nothing is recorded.
    assert ReflectionModel(model_name=base_dir, device="cpu").adapter_settings is None


def test_a_damaged_settings_file_fails_before_the_model_loads(
    taught_model, tiny_tokenizer, tmp_path: Path
) -> None:
    base_dir, adapter_dir = _saved_adapter(taught_model, tiny_tokenizer, tmp_path)
    (adapter_dir / SETTINGS_FILE).write_text("{")
    with pytest.raises(ValueError, match=SETTINGS_FILE):
        ReflectionModel(model_name=base_dir, adapter_name=adapter_dir, device="cpu")


def test_an_adapter_of_another_prompt_version_warns(taught_model, tiny_tokenizer) -> None:
    with pytest.warns(UserWarning, match="prompt version 7"):
        ReflectionModel.from_model(
            taught_model, tiny_tokenizer, adapter_settings=AdapterSettings(prompt_version=7)
        )


# --------------------------------------------------------------------------- RPORewriter


@pytest.fixture()
def trained_reflection(taught_model, tiny_tokenizer) -> ReflectionModel:
    return ReflectionModel.from_model(taught_model, tiny_tokenizer, adapter_settings=TRAINED)


def test_the_rewriter_takes_k_and_the_cuts_from_the_adapter(trained_reflection) -> None:
    store = UserHistoryStore.__new__(UserHistoryStore)  # never searched here
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        rewriter = RPORewriter(history=store, reflection=trained_reflection)
    assert (rewriter.k, rewriter.max_item_chars, rewriter.max_query_chars) == (2, 80, 500)
    assert trained_reflection.max_tokens == 40


def test_the_rewriter_warns_once_per_setting_that_differs(trained_reflection) -> None:
    store = UserHistoryStore.__new__(UserHistoryStore)
    with pytest.warns(UserWarning) as caught:
        rewriter = RPORewriter(
            history=store, reflection=trained_reflection, k=8, max_item_chars=80,
            max_query_chars=None,
        )  # fmt: skip
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    assert "RPORewriter: k=8 differs from the k=2" in messages[0]
    assert "max_query_chars=None differs from the max_query_chars=500" in messages[1]
    assert (rewriter.k, rewriter.max_item_chars, rewriter.max_query_chars) == (8, 80, None)


def test_a_format_item_owns_the_item_cut(trained_reflection) -> None:
    # The LaMP harness and the demo render each item in format_item, its long field cut there:
    # the adapter's cut of 80 must not cut the rendered item again.
    store = UserHistoryStore.__new__(UserHistoryStore)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        rewriter = RPORewriter(
            history=store, reflection=trained_reflection, format_item=lambda d: d.page_content
        )
        no_cut = RPORewriter(
            history=store, reflection=trained_reflection, format_item=lambda d: d.page_content,
            max_item_chars=None,
        )  # fmt: skip
    assert rewriter.max_item_chars == DEFAULT_ITEM_CHARS and rewriter.k == 2
    assert no_cut.max_item_chars is None


def test_a_reflection_model_without_settings_keeps_the_library_defaults(
    taught_reflection,
) -> None:
    store = UserHistoryStore.__new__(UserHistoryStore)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        rewriter = RPORewriter(history=store, reflection=taught_reflection, k=0)
    assert (rewriter.k, rewriter.max_item_chars, rewriter.max_query_chars) == (
        0,
        DEFAULT_ITEM_CHARS,
        DEFAULT_QUERY_CHARS,
    )


def test_the_llamaindex_engine_passes_on_only_what_its_caller_chose(trained_reflection) -> None:
    pytest.importorskip("llama_index.core")
    from llama_index.core import Document as LIDocument
    from llama_index.core import VectorStoreIndex
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.llms import MockLLM

    from langchain_rpo.integrations.llamaindex import RPOQueryEngine

    index = VectorStoreIndex.from_documents(
        [LIDocument(text="Rust 1.75 released")], embed_model=MockEmbedding(embed_dim=8)
    )
    engine = index.as_query_engine(llm=MockLLM(max_tokens=6))
    store = UserHistoryStore.__new__(UserHistoryStore)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        default = RPOQueryEngine(engine, history=store, reflection=trained_reflection)
    assert (default.rewriter.k, default.rewriter.max_item_chars) == (2, 80)
    no_cut = RPOQueryEngine(engine, history=store, reflection=trained_reflection, k=2,
                            max_item_chars=None)  # fmt: skip
    assert no_cut.rewriter.max_item_chars is None
