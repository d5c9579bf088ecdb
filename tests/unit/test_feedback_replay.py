"""The feedback replay benchmark (benchmarks/feedback_replay.py), end to end on tiny models.

A LaMP-5-format set written here (four authors; on their profile+dev timelines five, three,
three and one items, one profile item co-written by two), the conftest's taught reflection model
under a LoRA adapter saved in tmp, fake embeddings and a fake base model for the drafts (the
profile items' drafts too, through the harness cache). All three variants run, the DPO rounds on
the tiny model (one step each).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("trl")

from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models import FakeListChatModel

from benchmarks import feedback_replay
from benchmarks.feedback_replay import (
    ReplayConfig,
    draft_timelines,
    plan,
    timeline_question,
    user_steps,
    user_timelines,
)
from langchain_rpo import UserHistoryStore
from langchain_rpo.adapter_settings import AdapterSettings
from langchain_rpo.feedback_recording import FEEDBACK_SOURCE
from langchain_rpo.lamp.sets import parse_sets
from langchain_rpo.lamp.tasks import get_task

EMBEDDINGS = DeterministicFakeEmbedding(size=16)
PROMPT = "Generate a title for the following abstract of a paper: "
# Each author's earlier works (profile items, oldest first), then their dev questions.
EARLIER = {"ann": ["a0", "a1", "joint"], "bob": ["joint"], "cy": ["c0", "c1"], "dee": []}
DEV = {"ann": 2, "bob": 2, "cy": 1, "dee": 1}
DPO_ARGS = [
    "--learning_rate", "1e-3", "--report_to", "none", "--use_cpu", "--save_strategy", "no",
    "--logging_steps", "1", "--max_length", "1024", "--gradient_checkpointing", "false",
    "--per_device_train_batch_size", "2",
]  # fmt: skip
DRAFT = "A generic and rather long draft title"


def write_set(folder: Path) -> dict[str, list[tuple[str, str, str]]]:
    """Interleaved authors, as the real sets are; returns each author's timeline.

    A timeline entry is ``(id, gold, source)``. A dev question's profile holds the author's
    earlier works and earlier dev questions (with their gold titles), oldest first.
    """
    works = {
        work: {"id": work, "title": f"Work {work} Title", "abstract": f"abstract of {work}",
               "date": f"2000-01-0{i + 1}"}
        for i, work in enumerate(("a0", "a1", "c0", "joint", "c1"))
    }  # fmt: skip
    questions, golds = [], []
    profiles = {u: [works[w] for w in earlier] for u, earlier in EARLIER.items()}
    timelines = {
        u: [(f"{u}/{w}", works[w]["title"], "profile") for w in e] for u, e in EARLIER.items()
    }
    for n in range(2):
        for user, count in DEV.items():
            if n >= count:
                continue
            qid, gold, abstract = (
                f"{user}-{n}",
                f"{user.title()} Title {n} about Python",
                f"dev {n} by {user}",
            )
            questions.append(
                {
                    "id": qid,
                    "user": user,
                    "input": PROMPT + abstract,
                    "profile": list(profiles[user]),
                }
            )
            golds.append({"id": qid, "output": gold})
            profiles[user].append({"id": qid, "title": gold, "abstract": abstract, "date": "2001"})
            timelines[user].append((qid, gold, "dev"))
    folder.mkdir(parents=True)
    (folder / "dev_questions.json").write_text(json.dumps(questions))
    (folder / "dev_outputs.json").write_text(json.dumps({"task": "LaMP_5", "golds": golds}))
    return timelines


@pytest.fixture(scope="module")
def models(tmp_path_factory, taught_model, tiny_tokenizer) -> tuple[Path, Path]:
    """The taught model saved as a base, and a LoRA adapter on it with its settings file."""
    from peft import LoraConfig, get_peft_model

    base = tmp_path_factory.mktemp("base")
    taught_model.save_pretrained(base)
    tiny_tokenizer.save_pretrained(base)
    adapter = tmp_path_factory.mktemp("adapter")
    # B = 0 (PEFT's default init): the adapter starts as the taught model's own behaviour.
    peft = get_peft_model(type(taught_model).from_pretrained(base), LoraConfig(r=4))
    peft.save_pretrained(adapter)
    AdapterSettings(k=2, max_item_chars=80, max_new_tokens=40).write(adapter)
    return base, adapter


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def replayed(timelines: dict[str, list[tuple[str, str, str]]], last: int) -> dict[str, list]:
    """The timelines of the users with two items or more, cut to their last ``last``."""
    return {u: t[-last:] for u, t in timelines.items() if len(t) >= 2}


def test_the_replay_runs_every_variant_end_to_end(tmp_path, models) -> None:
    base, adapter = models
    timelines = write_set(tmp_path / "tiny")
    out = tmp_path / "out"
    config = ReplayConfig(
        sets=parse_sets([f"tiny={tmp_path / 'tiny'}"]), out=out, adapter=str(adapter),
        base_model=str(base), every=2, dpo_steps=1, dpo_recipe=None, dpo_args=DPO_ARGS,
        batch_size=2, last=4, drafts_dir=None, resamples=50, progress=False,
    )  # fmt: skip
    drafts = FakeListChatModel(responses=[DRAFT])
    summary = feedback_replay.run(config, embeddings=EMBEDDINGS, draft_model=drafts)
    expected = replayed(timelines, 4)  # ann: her last 4 of 5; dee (1 item) is left out

    for name in ("curve.md", "curve.png", "summary.json", "loop+dpo/rounds.json"):
        assert (out / name).is_file(), name
    # The users at each n: three have a first, second and third item, ann a fourth.
    assert [(row["n"], row["users"]) for row in summary["curve"]] == [
        (1, 3), (2, 3), (3, 3), (4, 1)
    ]  # fmt: skip
    assert "| 4 | 1 |" in (out / "curve.md").read_text()
    assert summary["sets"]["tiny"] == {
        "task": "LaMP_5", "users": 3, "items": 10, "profile_items": 5
    }  # fmt: skip
    assert summary["plan"] == {
        "users": 3, "answers": 10, "profile_items": 5, "reflections": 21, "dpo_rounds": 3
    }  # fmt: skip
    assert set(summary["gains"]) == {"no-loop -> loop", "no-loop -> loop+dpo", "loop -> loop+dpo"}
    assert set(summary["gains"]["no-loop -> loop"]) == {"all", "n>=2"}

    # Every replayed item (profile items too) was drafted through the harness cache.
    cached = {
        json.loads(line)["id"]
        for line in (out / "drafts" / "tiny" / "cache" / "zero.jsonl").read_text().splitlines()
    }
    assert cached == {qid for t in expected.values() for qid, _, _ in t}
    asked = json.loads((out / "drafts" / "tiny" / "timeline_questions.json").read_text())
    assert {q["id"]: q["input"] for q in asked}["ann/a1"] == PROMPT + "abstract of a1"
    assert all(q["profile"] == [] for q in asked)

    answers = {v: read_jsonl(out / v / "answers.jsonl") for v in feedback_replay.VARIANTS}
    for variant, rows in answers.items():
        assert len(rows) == 10
        # Each user's items in time order (profile items, then dev), each scored, n=1 cold.
        for user, timeline in expected.items():
            mine = [r for r in rows if r["user"] == f"tiny/{user}"]
            assert [(r["n"], r["id"], r["gold"], r["source"]) for r in mine] == [
                (n, *entry) for n, entry in enumerate(timeline, 1)
            ]
        assert all(0.0 <= r["rouge-L"] <= 1.0 for r in rows)
        assert {r["fallback_reason"] for r in rows if r["n"] == 1} == {"no_history"}
        # Every variant records each gold as feedback, so the history holds exactly the golds.
        store = UserHistoryStore.load(out / variant / "history.zip", EMBEDDINGS)
        for user, timeline in expected.items():
            items = list(store.iter_items(f"tiny/{user}"))
            assert sorted(i.text for i in items) == sorted(gold for _, gold, _ in timeline)
            assert {i.metadata["source"] for i in items} == {FEEDBACK_SOURCE}
            assert len(store.feedback(f"tiny/{user}")) == len(timeline)
    # no-loop never recalls (k=0); the loop does once a user has history.
    assert all(r["recalled"] == 0 for r in answers["no-loop"])
    assert all(r["recalled"] >= 1 for r in answers["loop"] if r["n"] >= 2)
    # The drafts are shared: the same draft for an item in every variant.
    assert {r["draft"] for v in answers.values() for r in v} == {DRAFT}

    rounds = json.loads((out / "loop+dpo" / "rounds.json").read_text())
    assert len(rounds) == summary["plan"]["dpo_rounds"]  # --plan counts them right
    # Round 1 came after the first chunk (2 events, both from an empty history: no pairs).
    assert rounds[0]["after_step"] == 1 and rounds[0]["records"] == 0 and not rounds[0]["trained"]
    trained = [r for r in rounds if r["trained"]]
    assert trained and all(r["events"] >= 2 for r in trained)
    order = [f"{r['set']}/{r['id']}" for r in answers["loop+dpo"]]
    for r in trained:
        assert r["steps"] == 1 and Path(r["adapter"], "adapter_config.json").is_file()
        # Only items answered before the round, and never one answered after it.
        assert set(r["trained_on"]) <= set(order[: r["answers_before"]])
        assert not set(r["trained_on"]) & set(order[r["answers_before"] :])
        assert r["records"] == len(r["trained_on"]) > 0
    # The next round continues from the previous round's adapter.
    assert trained[-1]["init_adapter"] == (
        trained[-2]["adapter"] if len(trained) > 1 else str(adapter)
    )


def test_timelines_drafts_steps_and_clear_errors(tmp_path) -> None:
    timelines = write_set(tmp_path / "tiny")
    sets = parse_sets([f"tiny={tmp_path / 'tiny'}"])
    users, specs = user_timelines(sets, last=8, min_items=2)
    spec = specs["tiny"]
    assert spec.name == "LaMP_5"
    assert {u: [(i.id, i.gold, i.source) for i in items] for u, items in users.items()} == {
        f"tiny/{u}": t for u, t in replayed(timelines, 8).items()
    }
    # A co-written work is on both authors' timelines, under ids of their own.
    assert {i.id for items in users.values() for i in items if i.id.endswith("/joint")} == {
        "ann/joint", "bob/joint"
    }  # fmt: skip
    # A profile item becomes the question the task asks: for ann's earlier dev question, which
    # is an item of her later one's profile, exactly the dev question's input.
    ann_0 = next(i for i in users["tiny/ann"] if i.id == "ann-0")
    assert timeline_question(spec, {"title": ann_0.gold, "abstract": "dev 0 by ann"}) == ann_0.input
    with pytest.raises(ValueError, match="use --timeline dev"):
        timeline_question(get_task("LaMP_7"), {"text": "a tweet"})

    # dev: the dev questions only; --min-items, --last and --limit-users (first K in file order).
    dev, _ = user_timelines(sets, timeline="dev", last=8, min_items=2)
    assert {u: [i.id for i in items] for u, items in dev.items()} == {
        "tiny/ann": ["ann-0", "ann-1"], "tiny/bob": ["bob-0", "bob-1"]
    }  # fmt: skip
    few, _ = user_timelines(sets, last=2, min_items=3, limit_users=2)
    assert {u: [i.id for i in items] for u, items in few.items()} == {
        "tiny/ann": ["ann-0", "ann-1"], "tiny/bob": ["bob-0", "bob-1"]
    }  # fmt: skip
    assert [i.n for i in few["tiny/ann"]] == [1, 2]

    # Drafts through the harness cache: generated once, then reused by a rerun.
    config = ReplayConfig(
        sets=sets, out=tmp_path / "o", batch_size=3, drafts_dir=None, progress=False
    )
    drafted = draft_timelines(users, specs, config, FakeListChatModel(responses=[DRAFT]))
    assert {i.draft for items in drafted.values() for i in items} == {DRAFT}
    cache = tmp_path / "o" / "drafts" / "tiny" / "cache" / "zero.jsonl"
    assert len(cache.read_text().splitlines()) == 11
    again = draft_timelines(users, specs, config, FakeListChatModel(responses=[DRAFT]))
    assert again == drafted and len(cache.read_text().splitlines()) == 11  # nothing drafted
    steps = user_steps(drafted, seed=1)
    assert [len(s) for s in steps] == [3, 3, 3, 1, 1] and [i.n for i in steps[1]] == [2, 2, 2]
    assert plan(steps, ReplayConfig(sets=sets, out=tmp_path, every=4, batch_size=2)) == {
        "users": 3, "answers": 11, "profile_items": 6, "reflections": 24, "dpo_rounds": 2
    }  # fmt: skip

    with pytest.raises(ValueError, match="--every must be at least 1"):
        ReplayConfig(sets=sets, out=tmp_path, every=0)
    with pytest.raises(ValueError, match="--variants must be among"):
        ReplayConfig(sets=sets, out=tmp_path, variants=("loop", "nope"))
    with pytest.raises(ValueError, match="--timeline must be one of"):
        ReplayConfig(sets=sets, out=tmp_path, timeline="profile")
    with pytest.raises(SystemExit):
        feedback_replay.main(["--set", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit):
        feedback_replay.main(["--set", str(tmp_path / "tiny"), "--out", str(tmp_path / "o"),
                              "--min-items", "9"])  # fmt: skip
