"""The training scripts end to end on a tiny random model and a tiny LaMP-5 split (seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("trl")

from langchain_core.embeddings import DeterministicFakeEmbedding  # noqa: E402
from tiny_models import make_model  # noqa: E402

from langchain_rpo.adapter_settings import LAMP_ITEM_CHARS, AdapterSettings  # noqa: E402
from langchain_rpo.prompts import build_reflection_messages  # noqa: E402
from langchain_rpo.reflection import ReflectionModel, to_chat_dicts  # noqa: E402
from langchain_rpo.trajectory import Trajectory, parse  # noqa: E402
from training.rewards import make_reward_funcs  # noqa: E402

TITLES = ["Rust Release Notes", "Import Hooks", "Lazy Imports", "Fast Paths", "Typed Dicts"]


def _write_split(root: Path, n: int = 6) -> tuple[Path, Path]:
    questions, golds = [], []
    for i in range(n):
        profile = [
            {"id": f"p{i}-{j}", "title": TITLES[(i + j) % 5], "abstract": f"about {TITLES[j]} x"}
            for j in range(3)
        ]
        questions.append(
            {
                "id": f"q{i}",
                "user": f"u{i % 2}",
                "input": f"Generate a title for the following abstract of a paper: abstract {i}",
                "profile": profile,
            }
        )
        golds.append({"id": f"q{i}", "output": TITLES[i % 5]})
    q_path, o_path = root / "train_questions.json", root / "train_outputs.json"
    q_path.write_text(json.dumps(questions))
    o_path.write_text(json.dumps({"task": "LaMP_5", "golds": golds}))
    return q_path, o_path


@pytest.fixture()
def split(tmp_path):
    return _write_split(tmp_path)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer):
    path = tmp_path_factory.mktemp("tiny_model")
    make_model(tiny_tokenizer).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


def _build(tmp_path, split, tiny_tokenizer, **overrides):
    from training.build_trajectories import BuildConfig, run

    q_path, o_path = split
    config = BuildConfig(
        questions=str(q_path),
        outputs=str(o_path),
        out=str(tmp_path / "records.jsonl"),
        drafts_dir=str(tmp_path / "drafts"),
        k=[1, 2],
        **overrides,
    )
    base = ReflectionModel.from_model(make_model(tiny_tokenizer, seed=3), tiny_tokenizer,
                                      max_new_tokens=6)  # fmt: skip
    summary = run(config, base_model=base, embeddings=DeterministicFakeEmbedding(size=16),
                  progress=False)  # fmt: skip
    return config, summary


def test_build_trajectories_offline(tmp_path, split, tiny_tokenizer):
    config, summary = _build(tmp_path, split, tiny_tokenizer)
    records = [json.loads(line) for line in Path(config.out).read_text().splitlines()]
    assert summary["records"] == len(records) == 12 and summary["rejects"] == {}
    assert summary["by_k"] == {1: 6, 2: 6} or summary["by_k"] == {"1": 6, "2": 6}
    golds = {f"q{i}": TITLES[i % 5] for i in range(6)}
    drafts = {
        json.loads(line)["id"]: json.loads(line)["draft"]
        for line in (tmp_path / "drafts" / "cache" / "drafts.jsonl").read_text().splitlines()
    }
    for record in records:
        assert {"id", "user", "k", "source", "prompt", "completion", "gold"} <= set(record)
        assert record["source"] == "offline"
        trajectory = parse(record["completion"][0]["content"])
        assert trajectory.rewrite == golds[record["id"]]
        assert trajectory.preferences and trajectory.gaps
        # The prompt is the inference prompt: build_reflection_messages over the draft.
        user = record["prompt"][1]["content"]
        assert user.count('is a title for "') == record["k"]
        assert record["prompt"][0] == to_chat_dicts(build_reflection_messages("d", []))[0]
        assert user.endswith(" ".join(drafts[record["id"]].split()))
    # Drafts are cached through the harness: a second build generates nothing new.
    lines = (tmp_path / "drafts" / "cache" / "drafts.jsonl").read_text().count("\n")
    _build(tmp_path, split, tiny_tokenizer)
    assert (tmp_path / "drafts" / "cache" / "drafts.jsonl").read_text().count("\n") == lines


def test_build_trajectories_rewrite_only_control(tmp_path, split, tiny_tokenizer):
    """The trajectory ablation's records: the same prompts and golds, the rewrite block alone."""
    control = tmp_path / "control" / "rewrite_only.jsonl"
    config, summary = _build(tmp_path, split, tiny_tokenizer, rewrite_only_out=str(control))
    full = [json.loads(line) for line in Path(config.out).read_text().splitlines()]
    plain = [json.loads(line) for line in control.read_text().splitlines()]
    assert len(plain) == len(full) == summary["records"] == 12
    for a, b in zip(full, plain, strict=True):
        assert {k: v for k, v in a.items() if k != "completion"} == {
            k: v for k, v in b.items() if k != "completion"
        }
        content = b["completion"][0]["content"]
        assert content == f"<rewrite>{a['gold']}</rewrite>"
        assert parse(content) == Trajectory(rewrite=a["gold"])
        assert parse(a["completion"][0]["content"]).rewrite == a["gold"]


def test_build_trajectories_teacher_filters_by_score(tmp_path, split, tiny_tokenizer):
    from langchain_core.language_models import FakeListChatModel

    from training.build_trajectories import build_records
    from training.data import Recall, load_split

    q_path, o_path = split
    data = load_split(q_path, o_path)
    recall = Recall(data.spec, data.questions, DeterministicFakeEmbedding(size=16))
    drafts = {q.id: "a draft" for q in data.questions}
    answers = [
        "<preferences>short</preferences><gaps>long</gaps><rewrite>Rust Release Notes</rewrite>",
        "<rewrite>Unrelated words entirely</rewrite>",
        "no trajectory at all",
    ] * 2
    teacher = FakeListChatModel(responses=answers)
    records, rejects = build_records(data, drafts, recall, [2], "teacher", teacher, 0.5, False)
    # q0's gold is the good answer's rewrite; q3's good answer scores 0 against "Fast Paths".
    assert [r["id"] for r in records] == ["q0"]
    assert rejects["below_threshold"] >= 1 and rejects["unparsable:no_rewrite_block"] == 2


def test_sft_end_to_end(tmp_path, split, tiny_tokenizer, tiny_model_dir):
    from training import sft

    config, _ = _build(tmp_path, split, tiny_tokenizer)
    out = tmp_path / "sft"
    metrics = sft.main(
        [
            "--dataset", config.out, "--model_name_or_path", str(tiny_model_dir),
            "--output_dir", str(out), "--max_steps", "3", "--per_device_train_batch_size", "2",
            "--learning_rate", "1e-3", "--use_peft", "--lora_r", "4", "--lora_alpha", "8",
            "--lora_target_modules", "all-linear", "--report_to", "none", "--use_cpu",
            "--save_strategy", "no", "--logging_steps", "1", "--max_length", "1024",
            "--lora_layers", "1", "--max_item_chars", "80", "--eval_k", "2",
            "--eval_max_new_tokens", "5",
        ]
    )  # fmt: skip
    assert metrics["global_step"] == 3
    # The settings travel with the adapter, and its users take them as defaults.
    assert AdapterSettings.read(out) == AdapterSettings(k=2, max_item_chars=80, max_new_tokens=5)
    assert ReflectionModel.from_pretrained(tiny_model_dir, adapter=out).max_tokens == 5
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert adapter_config["layers_to_transform"] == [1]  # the backward pass stops at layer 1
    assert (out / "adapter_config.json").is_file() and (out / "recipe.yaml").is_file()
    saved = json.loads((out / "metrics.json").read_text())
    assert any("loss" in row for row in saved["log_history"])
    # The adapter loads into the project's ReflectionModel.
    reflection = ReflectionModel.from_pretrained(tiny_model_dir, adapter=out, max_new_tokens=4)
    assert isinstance(reflection.invoke("hi").content, str)


def test_grpo_curriculum_end_to_end(tmp_path, split, tiny_tokenizer, tiny_model_dir, monkeypatch):
    from training import grpo

    seen: list[list[str]] = []  # the question ids each reward call scored, in order

    def recording_reward_funcs(spec):
        task, fmt = make_reward_funcs(spec)

        def recorded(completions, id, **kwargs):  # TRL passes the dataset columns by name
            seen.append(list(id))
            return task(completions=completions, **kwargs)

        recorded.__name__ = task.__name__
        return [recorded, fmt]

    monkeypatch.setattr(grpo, "make_reward_funcs", recording_reward_funcs)
    q_path, o_path = split
    sft_out = tmp_path / "sft"
    test_sft_end_to_end(tmp_path, split, tiny_tokenizer, tiny_model_dir)
    out = tmp_path / "grpo"
    base = ReflectionModel.from_model(make_model(tiny_tokenizer, seed=3), tiny_tokenizer,
                                      max_new_tokens=6)  # fmt: skip
    metrics = grpo.main(
        [
            "--questions", str(q_path), "--outputs", str(o_path),
            "--drafts_dir", str(tmp_path / "drafts"), "--sft_adapter", str(sft_out),
            "--model_name_or_path", str(tiny_model_dir), "--output_dir", str(out),
            "--curriculum_ks", "1", "2", "4", "--steps_per_stage", "1",
            "--per_device_train_batch_size", "2", "--num_generations", "2",
            "--max_completion_length", "8", "--report_to", "none", "--use_cpu",
            "--save_strategy", "no", "--logging_steps", "1", "--learning_rate", "1e-3",
        ],
        base_model=base,
        embeddings=DeterministicFakeEmbedding(size=16),
        progress=False,
    )  # fmt: skip
    assert [s["k"] for s in metrics["stages"]] == [1, 2, 4]
    assert all(s["steps"] == 1 and "reward" in s for s in metrics["stages"])
    # Each stage drew a new question (one prompt, two generations a step), the ones planned.
    assert [set(ids) for ids in seen] == [{f"q{i}"} for i in grpo.stage_orders(6, grpo.curriculum(
        [1, 2, 4], 1), per_step=1, seed=42)[0][:3]]  # fmt: skip
    assert metrics["questions_drawn"] == 3 and len({ids[0] for ids in seen}) == 3
    assert (out / "adapter_config.json").is_file() and (out / "metrics.json").is_file()
    assert AdapterSettings.read(out) == AdapterSettings(max_item_chars=LAMP_ITEM_CHARS)
    reflection = ReflectionModel.from_pretrained(tiny_model_dir, adapter=out, max_new_tokens=4)
    assert isinstance(reflection.invoke("hi").content, str)


def test_a_cpu_recipe_trains_in_float32_where_bfloat16_would_be_emulated(tmp_path, monkeypatch):
    from trl import SFTConfig

    from training import precision

    def config() -> SFTConfig:
        return SFTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=True, report_to="none")

    assert isinstance(precision.cpu_has_native_bf16(), bool)  # this machine's real answer
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)  # an AVX2-only CPU
    args = config()
    assert args.mixed_precision == "bf16"
    with pytest.warns(UserWarning, match="no native bfloat16.*RPO_KEEP_CPU_BF16=1"):
        assert precision.avoid_emulated_bf16(args)
    assert args.bf16 is False and args.mixed_precision == "no"
    # Kept where the user asks for it, and where the CPU has it (AVX-512-BF16, AMX).
    monkeypatch.setenv(precision.KEEP_ENV, "1")
    assert not precision.avoid_emulated_bf16(kept := config()) and kept.bf16
    monkeypatch.delenv(precision.KEEP_ENV)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert not precision.avoid_emulated_bf16(native := config()) and native.bf16
