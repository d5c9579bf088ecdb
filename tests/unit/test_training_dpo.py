"""Learning from feedback, training side: events -> preference records -> DPO / KTO, tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("trl")

from tiny_models import make_model

from langchain_rpo.adapter_settings import AdapterSettings
from langchain_rpo.feedback import FeedbackEvent, write_events
from langchain_rpo.reflection import ReflectionModel, to_chat_dicts
from langchain_rpo.trajectory import Trajectory, parse, render
from training import build_preferences, dpo, kto
from training.build_preferences import event_completions, preference_records

ROOT = Path(__file__).resolve().parents[2]
TEXTS = ["Rust 1.75 released", "Import Hooks for Python", "Lazy Imports"]
MODEL_TRAJECTORY = Trajectory(rewrite="Some generic rewrite.", preferences="p", gaps="g")


def make_event(verdict: str, n: int = 0, **overrides: object) -> FeedbackEvent:
    fields = {
        "user_id": f"u{n % 2}",
        "verdict": verdict,
        "draft": f"A long and generic draft title number {n}.",
        "final_text": f"Rust 1.7{n} Released" if verdict == "edited" else None,
        "query": f"Write a title for: article {n}",
        "trajectory": MODEL_TRAJECTORY,
        "raw_reflection": render(MODEL_TRAJECTORY),
        "recalled_ids": ["i1", "i2"],
        "recalled_texts": TEXTS[:2],
        "time": f"2026-12-0{1 + n % 9}T10:00:00Z",
        "event_id": f"e{n}",
    }
    if verdict == "accepted":
        fields["final_text"] = MODEL_TRAJECTORY.rewrite
    fields.update(overrides)
    return FeedbackEvent(**fields)  # type: ignore[arg-type]


def events() -> list[FeedbackEvent]:
    """One of each kind: what it teaches is in the comments."""
    return [
        make_event("edited", 0),  # a pair: the edit as a trajectory over the model's
        make_event("edited", 1, max_item_chars=6),  # the same, items cut as the prompt cut them
        make_event("accepted", 2),  # the model's own trajectory, kept: desirable, no pair
        make_event("rejected", 3),  # the model's output, discarded: undesirable, no pair
        # The draft came back (unusable output) and the user kept it: a pair over the raw output.
        make_event(
            "accepted",
            4,
            trajectory=None,
            raw_reflection="<rewrite>half",
            final_text="A long and generic draft title number 4.",
        ),
        # No history yet: the reflection model never ran, nothing to learn from.
        make_event(
            "edited", 5, trajectory=None, raw_reflection=None, recalled_ids=[], recalled_texts=None
        ),
        make_event("edited", 6, recalled_texts=None),  # its prompt cannot be rebuilt
    ]


def test_dpo_records_prefer_the_users_edit_over_the_models_output() -> None:
    records, skipped = preference_records(events(), "dpo")
    assert [r["event_id"] for r in records] == ["e0", "e1", "e4"]
    assert skipped == {
        "no_pair:accepted": 1,
        "no_pair:rejected": 1,
        "not_reflected": 1,
        "no_recalled_texts": 1,
    }
    by_id = {e.event_id: e for e in events()}
    for record in records:
        event = by_id[record["event_id"]]
        # The prompt is the one inference built, with the event's own cuts.
        assert record["prompt"] == to_chat_dicts(event.reflection_messages())
        assert record["user"] == event.user_id and record["verdict"] == event.verdict.value
        chosen = parse(record["chosen"][0]["content"])
        assert chosen.rewrite == event.final_text and chosen.preferences and chosen.gaps
        assert record["rejected"][0]["content"] == (
            event.raw_reflection if event.trajectory is None else render(event.trajectory)
        )
    e0, e1 = (parse(r["chosen"][0]["content"]) for r in records[:2])
    # Evidence only from what the prompt showed: the recalled texts, cut at 6 characters for e1.
    assert e0.preferences.startswith("3-4 words") and "recurring" not in e0.preferences
    assert e1.preferences.startswith("1 words")  # "Rust…", "Import…"
    # The top item's version makes a template ("Rust # released"), which the draft leaves.
    assert e0.preferences.endswith("template: Rust # released")
    assert e0.gaps == "8 words, longer; final period; not in the template"  # draft vs items


def test_kto_records_label_each_completion_alone() -> None:
    records, skipped = preference_records(events(), "kto")
    labels = [(r["event_id"], r["label"]) for r in records]
    assert labels == [
        ("e0", True),
        ("e0", False),
        ("e1", True),
        ("e1", False),
        ("e2", True),
        ("e3", False),
        ("e4", True),
        ("e4", False),
    ]
    accepted = next(r for r in records if r["event_id"] == "e2")
    assert accepted["completion"][0]["content"] == render(MODEL_TRAJECTORY)
    assert skipped == {"not_reflected": 1, "no_recalled_texts": 1}


def test_a_rewrite_only_adapters_feedback_is_taught_in_its_own_format() -> None:
    """The default adapter answers with <rewrite> alone: chosen and rejected are rewrites too."""
    bare = Trajectory(rewrite="Some generic rewrite.")
    edit = make_event("edited", 0, trajectory=bare, raw_reflection=render(bare, ("rewrite",)))
    kept = make_event("accepted", 2, trajectory=bare, raw_reflection=edit.raw_reflection)
    (pair,), _ = preference_records([edit], "dpo")
    assert pair["chosen"][0]["content"] == "<rewrite>Rust 1.70 Released</rewrite>"
    assert pair["rejected"][0]["content"] == "<rewrite>Some generic rewrite.</rewrite>"
    (desirable,), _ = preference_records([kept], "kto")
    assert desirable["completion"][0]["content"] == "<rewrite>Some generic rewrite.</rewrite>"
    # A model that wrote no usable answer was prompted for the trajectory: all three blocks.
    failed = make_event("edited", 4, trajectory=None, raw_reflection="<rewrite>half")
    found, _ = event_completions(failed)
    assert parse(found.desirable).preferences and found.undesirable == "<rewrite>half"


def test_a_task_shapes_the_evidence_and_unknown_formats_are_refused() -> None:
    from langchain_rpo.lamp.tasks import get_task

    rating = make_event("edited", 0, recalled_texts=["4", "5"], draft="3", final_text="4")
    found, _ = event_completions(rating, get_task("LaMP_3"))
    assert parse(found.desirable).preferences == "ratings: 4 (1 of 2), 5 (1 of 2)"
    with pytest.raises(ValueError, match="format must be one of dpo, kto"):
        preference_records([], "ipo")


def test_build_preferences_script_writes_records_and_a_summary(tmp_path) -> None:
    path = tmp_path / "feedback.jsonl"
    write_events(path, events())
    out = tmp_path / "prefs.jsonl"
    summary = build_preferences.main(
        ["--events", str(path), "--out", str(out), "--before", "2026-12-05T12:00:00+02:00"]
    )
    # Events e0..e3 are before 10:00 UTC on 2026-12-05; e4 (10:00) is not strictly before it.
    assert summary["events"] == 4 and summary["records"] == 2
    assert summary["by_verdict"] == {"edited": 2, "accepted": 1, "rejected": 1}
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["event_id"] for r in lines] == ["e0", "e1"]
    assert json.loads(out.with_suffix(".summary.json").read_text())["records"] == 2


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    path = tmp_path_factory.mktemp("tiny_model")
    make_model(tiny_tokenizer).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def init_adapter(tmp_path_factory, tiny_tokenizer) -> Path:
    """A LoRA adapter with non-zero weights (a trained one's stand-in) and its settings file."""
    from peft import LoraConfig, get_peft_model

    path = tmp_path_factory.mktemp("init_adapter")
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(make_model(tiny_tokenizer), config).save_pretrained(path)
    AdapterSettings(k=2, max_item_chars=80, max_new_tokens=8).write(path)
    return path


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "adapter_model.safetensors")


ARGS = [
    "--max_steps",
    "2",
    "--learning_rate",
    "1e-3",
    "--report_to",
    "none",
    "--use_cpu",
    "--save_strategy",
    "no",
    "--logging_steps",
    "1",
    "--max_length",
    "1024",
    "--gradient_checkpointing",
    "false",
]


@pytest.mark.parametrize("method", ["dpo", "kto"])
def test_preference_training_continues_an_adapter_end_to_end(
    tmp_path, method, tiny_model_dir, init_adapter
) -> None:
    path, records = tmp_path / "feedback.jsonl", tmp_path / f"{method}.jsonl"
    write_events(path, [make_event("edited", n) for n in range(4)] + events())
    build_preferences.main(["--events", str(path), "--out", str(records), "--format", method])
    out = tmp_path / "out"
    script = dpo if method == "dpo" else kto
    metrics = script.main(
        [
            "--dataset",
            str(records),
            "--init_adapter",
            str(init_adapter),
            "--model_name_or_path",
            str(tiny_model_dir),
            "--output_dir",
            str(out),
            "--per_device_train_batch_size",
            "4",
            *ARGS,
        ]
    )
    assert metrics["global_step"] == 2 and metrics["method"] == method
    history = json.loads((out / "metrics.json").read_text())["log_history"]
    # The reference is the initial adapter: at the first step the policy equals it.
    if method == "dpo":
        assert history[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-6)
    # One adapter, the trained one (the frozen reference copy is not saved), changed by training.
    before, after = _weights(init_adapter), _weights(out)
    assert sorted(after) == sorted(before) and not any(".ref." in key for key in after)
    assert any(not after[key].equal(before[key]) for key in before)
    assert not (out / "ref").exists()
    # It carries the initial adapter's settings and loads like any other adapter.
    assert AdapterSettings.read(out) == AdapterSettings.read(init_adapter)
    reflection = ReflectionModel.from_pretrained(tiny_model_dir, adapter=out)
    assert reflection.adapter_settings == AdapterSettings.read(init_adapter)
    assert isinstance(reflection.invoke("hi").content, str)


def test_dpo_from_a_fresh_lora_and_clear_data_errors(tmp_path, tiny_model_dir) -> None:
    records = tmp_path / "kto.jsonl"
    recs, _ = preference_records(events(), "kto")
    records.write_text("".join(json.dumps(r) + "\n" for r in recs))
    common = [
        "--model_name_or_path",
        str(tiny_model_dir),
        "--output_dir",
        str(tmp_path / "o"),
        "--per_device_train_batch_size",
        "2",
        *ARGS,
    ]
    with pytest.raises(
        ValueError, match="These are KTO records: train them with python -m training.kto"
    ):
        dpo.main(["--dataset", str(records), "--use_peft", *common])
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="no preference records"):
        dpo.main(["--dataset", str(tmp_path / "empty.jsonl"), "--use_peft", *common])
    pairs = tmp_path / "dpo.jsonl"
    recs, _ = preference_records(events(), "dpo")
    pairs.write_text("".join(json.dumps(r) + "\n" for r in recs))
    with pytest.raises(ValueError, match="Nothing to train"):
        dpo.main(["--dataset", str(pairs), *common])
    metrics = dpo.main(
        [
            "--dataset",
            str(pairs),
            "--use_peft",
            "--lora_r",
            "4",
            "--lora_target_modules",
            "all-linear",
            *common,
        ]
    )
    assert metrics["global_step"] == 2
    assert (
        ReflectionModel.from_pretrained(tiny_model_dir, adapter=tmp_path / "o").adapter_settings
        == AdapterSettings()
    )


@pytest.mark.parametrize("method", ["dpo", "kto"])
def test_the_cpu_recipes_parse(method) -> None:
    script_args, training_args, model_args = dpo.make_parser(method).parse_args_and_config(
        args=["--config", str(ROOT / f"training/recipes/{method}_smollm2_135m_cpu.yaml")]
    )
    assert script_args.init_adapter == "langchain_rpo/adapters/smollm2-135m-rpo"
    assert (ROOT / script_args.init_adapter / "adapter_config.json").is_file()
    assert training_args.use_cpu and not training_args.gradient_checkpointing
    assert model_args.model_name_or_path is None  # the packaged SmolLM2-135M-Instruct
