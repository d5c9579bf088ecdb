"""GRPO rewards, the curriculum schedule and the offline evidence: pure functions."""

from __future__ import annotations

import doctest

import pytest

from langchain_rpo.lamp.tasks import get_task
from langchain_rpo.trajectory import Trajectory, render
from training import build_trajectories, grpo, rewards
from training.rewards import curriculum, format_reward, make_reward_funcs, task_reward, task_score


@pytest.mark.parametrize("module", [rewards, build_trajectories, grpo])
def test_doctests(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def _t(rewrite, preferences="p", gaps="g"):
    return render(Trajectory(rewrite=rewrite, preferences=preferences, gaps=gaps))


def test_task_reward_uses_each_task_metric_on_the_parsed_rewrite():
    assert task_reward("LaMP_2", _t("Dark Comedy"), "dark comedy") == 1.0  # parse_answer maps it
    assert task_reward("LaMP_1", _t("[2]"), "[1]") == 0.0
    assert task_reward("LaMP_3", _t("5"), "1") == 0.0
    assert task_reward("LaMP_3", _t("2"), "1") == 0.75
    assert task_reward("LaMP_5", _t('Title: "Lazy Imports"'), "Lazy Imports") == 1.0
    assert 0 < task_reward("LaMP_4", _t("Rust 1.75 released"), "Rust 1.76 released") < 1
    assert task_reward("LaMP_5", "Lazy Imports", "Lazy Imports") == 0.0  # no trajectory


def test_task_score_matches_the_official_metrics():
    from langchain_rpo.lamp.metrics import evaluate

    preds, golds = {"a": "x y z", "b": "q"}, {"a": "x y", "b": "r q"}
    spec = get_task("LaMP_5")
    mean = sum(task_score(spec, preds[i], golds[i]) for i in golds) / 2
    assert mean == pytest.approx(evaluate(spec, preds, golds)["rouge-L"])
    mae = evaluate("LaMP_3", {"a": "5"}, {"a": "2"})["MAE"]
    assert task_score("LaMP_3", "5", "2") == pytest.approx(1 - mae / 4)


def test_format_reward_grades_well_formed_trajectories():
    assert format_reward(_t("x")) == 1.0
    assert format_reward(_t("x", preferences="", gaps="")) == 0.5
    assert format_reward("<preferences>p</preferences><rewrite>") == 0.0
    assert format_reward(_t("x") + "\ntrailing words") == 1.0


def test_reward_funcs_follow_trl_calling_convention():
    task, fmt = make_reward_funcs(get_task("LaMP_5"))
    completions = [[{"role": "assistant", "content": _t("Lazy Imports")}], "<rewrite>no"]
    kwargs = {"prompts": [[], []], "completion_ids": [[1], [2]], "id": ["a", "b"]}
    assert task(completions=completions, gold=["Lazy Imports"] * 2, **kwargs) == [1.0, 0.0]
    assert fmt(completions=completions, **kwargs) == [1.0, 0.0]
    assert task.__name__ == "task_LaMP_5" and fmt.__name__ == "format"


def test_curriculum_grows_the_context():
    stages = curriculum()
    assert [s.k for s in stages] == [1, 2, 4, 8] and [s.index for s in stages] == [0, 1, 2, 3]
    assert [s.steps for s in curriculum((1, 2), [3, 7])] == [3, 7]


@pytest.mark.parametrize(
    ("ks", "steps"), [((), 1), ((2, 1), 1), ((0, 1), 1), ((1, 1), 1), ((1, 2), [1]), ((1,), 0)]
)
def test_curriculum_rejects_bad_schedules(ks, steps):
    with pytest.raises(ValueError):
        curriculum(ks, steps)


def test_stage_rewards_average_per_stage():
    rows = [{"reward": 0.2, "rewards/format/mean": 1.0, "rewards/format/std": 0.0}, {"reward": 0.4}]
    assert grpo.stage_rewards(rows) == pytest.approx({"reward": 0.3, "rewards/format/mean": 1.0})


def test_stage_orders_give_each_stage_new_questions_then_wrap():
    schedule = curriculum((1, 2, 4, 8), [3, 3, 3, 3])
    orders = grpo.stage_orders(20, schedule, per_step=2, seed=7)
    drawn = [order[:6] for order in orders]  # 3 steps x 2 prompts per stage
    assert all(sorted(order) == list(range(20)) for order in orders)  # rotations of one shuffle
    assert len(set(drawn[0] + drawn[1] + drawn[2])) == 18  # disjoint until the split runs out
    assert drawn[3] == orders[0][18:20] + orders[0][:4]  # then it wraps around
    assert grpo.stage_orders(20, schedule, 2, seed=7) == orders  # seeded
    assert grpo.stage_orders(20, schedule, 2, seed=8)[0] != orders[0]


def test_offline_trajectory_states_only_measured_evidence():
    spec = get_task("LaMP_5")
    items = [
        {"title": "Import Hooks", "abstract": "a"},
        {"title": "Lazy Import Hooks", "abstract": "b"},
    ]
    t = build_trajectories.offline_trajectory(spec, items, 'Title: "A New Way to Import."', "Gold")
    assert t.rewrite == "Gold"
    assert "2-3 words" in t.preferences and "Title Case" in t.preferences
    assert "hooks" in t.preferences and "import" in t.preferences
    assert "final period" in t.gaps  # the mapped draft ends with a period; the titles never do
    empty = build_trajectories.offline_trajectory(spec, [], "draft", "Gold")
    assert (empty.preferences, empty.gaps) == ("no past items", "no evidence")
    ratings = build_trajectories.offline_trajectory(
        get_task("LaMP_3"), [{"text": "t", "score": "5"}] * 2, "3", "5"
    )
    assert ratings.preferences == "ratings: 5 (2 of 2)" and ratings.gaps == "draft 3, past mostly 5"


@pytest.mark.parametrize(
    ("recalled", "template", "gold", "draft"),
    [  # real dev-set failures: the adapter ignored the series the recalled titles follow
        (["Go 1.16 is released", "Go 1.23 is released"], "Go # is released",
         "Go 1.25 is released", "Release Go 1.25"),
        (["Go 1.21 Release Candidate", "Go 1.21 is released!"], "Go # ...",
         "Go 1.22 is released!", "Release Candidate"),
        (["Hardfork Meta: Istanbul", "Reduced gas cost for call to self", "REVERT instruction"],
         "Hardfork Meta: ...", "Hardfork Meta: Petersburg", "Ethereum Hardfork Protocol"),
        (["EOF - EVM Object Format v1", "Limit size of `initcode`", "EOF - Code Validation"],
         "EOF - ...", "EOF - JUMPDEST Table", "Code section validation"),
        (["Segwit Output Script Descriptors", "Miniscript", "tr() Output Script Descriptors"],
         "... Output Script Descriptors", "combo() Output Script Descriptors", "Combo descriptor"),
        (["Adds `baseFee` to `eth_getBlockByHash`", "Fee market change for ETH 1.0 chain",
          "Adds `baseFee` to `eth_getBlockByNumber`"], "Adds `baseFee` to ...",
         "Adds `baseFee` to `eth_getUncleByBlockHashAndIndex`", "Base fee in uncle RPC"),
    ],
)  # fmt: skip
def test_offline_trajectory_states_the_series_template(recalled, template, gold, draft):
    spec = get_task("LaMP_5")
    items = [{"title": title, "abstract": "a"} for title in recalled]
    t = build_trajectories.offline_trajectory(spec, items, draft, gold)
    assert t.preferences.endswith(f"; template: {template}")
    assert "recurring:" not in t.preferences  # the template replaces it: the budget stays short
    assert "not in the template" in t.gaps
    assert str(build_trajectories.find_template(recalled)) == template
    assert build_trajectories.find_template(recalled).fits(gold)  # the signal to learn
    # Built from the recalled items and the draft only: another gold changes only the rewrite.
    other = build_trajectories.offline_trajectory(spec, items, draft, "Something Else Entirely")
    assert (other.preferences, other.gaps) == (t.preferences, t.gaps)
    # A draft that follows the template has no such gap.
    assert "template" not in build_trajectories.describe_gaps(spec, recalled, gold)


@pytest.mark.parametrize(
    "recalled",
    [
        ["Import Hooks", "Lazy Import Hooks"],  # one shared word is not a series
        ["Doing Python Releases 101", "Doing Python Micro Releases"],  # two plain words, two items
        ["Go: What's New in March 2010", "Go Slices: usage and internals"],  # sentences
        ["The Laws of Reflection", "The cover story"],  # stopwords only
        [],
    ],
)
def test_find_template_states_nothing_without_a_series(recalled):
    assert build_trajectories.find_template(recalled) is None


def test_a_plain_shared_head_needs_three_items():
    titles = ["Package Manager Local Dependencies", "Package Manager System Library Targets"]
    assert build_trajectories.find_template(titles) is None
    titles.append("Package Manager Swift Language Version API Update")
    assert str(build_trajectories.find_template(titles)) == "Package Manager ..."
