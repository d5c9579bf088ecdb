"""GRPO rewards and the multi-context curriculum: small pure functions.

The task reward scores the parsed rewrite against the gold with the task's own metric (the
one :mod:`langchain_rpo.lamp.metrics` reports), after the answer mapping the harness applies
(:meth:`~langchain_rpo.lamp.tasks.TaskSpec.parse_answer`):

- classification: accuracy (1 or 0);
- rating: ``1 - |error| / 4`` (an unparsable rating counts as the farther of 1 and 5);
- generation: ROUGE-L F1.

The format reward is 1 for a well-formed trajectory (all three blocks, a non-empty rewrite), 0.5
for a usable rewrite without the other blocks and 0 for an unusable output. The trajectory is
parsed by :mod:`langchain_rpo.trajectory`, never here.

TRL calls a reward function as ``f(prompts=..., completions=..., **dataset_columns)``;
:func:`make_reward_funcs` builds the two functions from these pure scorers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_rpo.lamp.metrics import accuracy, rating_value, rouge
from langchain_rpo.lamp.tasks import TaskSpec, get_task
from langchain_rpo.trajectory import try_parse

__all__ = [
    "completion_text",
    "task_score",
    "task_reward",
    "format_reward",
    "CurriculumStage",
    "curriculum",
    "make_reward_funcs",
]


def completion_text(completion: Any) -> str:
    """Return the text of a TRL completion: a string, or a list of chat messages.

    >>> completion_text("<rewrite>a</rewrite>")
    '<rewrite>a</rewrite>'
    >>> completion_text([{"role": "assistant", "content": "hi"}])
    'hi'
    """
    if isinstance(completion, str):
        return completion
    return "".join(str(message.get("content", "")) for message in completion)


def task_score(spec: TaskSpec | str, prediction: str, gold: str) -> float:
    """Score one mapped prediction against its gold with the task's metric, in [0, 1].

    Args:
        spec: The task (or its name).
        prediction: The answer, already mapped by ``spec.parse_answer``.
        gold: The gold output.

    Returns:
        Accuracy (labels), ``1 - |error| / 4`` (ratings) or ROUGE-L F1 (text).

    >>> task_score("LaMP_2", "comedy", "comedy"), task_score("LaMP_2", "drama", "comedy")
    (1.0, 0.0)
    >>> task_score("LaMP_3", "4", "2"), task_score("LaMP_3", "n/a", "2")
    (0.5, 0.25)
    >>> round(task_score("LaMP_5", "Copyable Iterators", "Copyable iterators for Python"), 3)
    0.667
    """
    spec = get_task(spec) if isinstance(spec, str) else spec
    if spec.kind == "classification":
        return accuracy([prediction], [gold])
    if spec.kind == "rating":
        error = abs(rating_value(prediction, gold) - float(str(gold).strip()))
        return max(0.0, 1.0 - error / 4.0)
    return rouge([prediction], [gold])["rouge-L"]


def task_reward(spec: TaskSpec | str, output: str, gold: str) -> float:
    """Reward a raw reflection output: the task score of its parsed rewrite (0 if unusable).

    >>> task_reward("LaMP_2", "<preferences>p</preferences><rewrite>Comedy</rewrite>", "comedy")
    1.0
    >>> task_reward("LaMP_2", "comedy, no tags", "comedy")
    0.0
    """
    spec = get_task(spec) if isinstance(spec, str) else spec
    trajectory, _ = try_parse(output)
    if trajectory is None:
        return 0.0
    return task_score(spec, spec.parse_answer(trajectory.rewrite), gold)


def format_reward(output: str) -> float:
    """Reward a well-formed trajectory: 1 with all three blocks, 0.5 with a rewrite only, else 0.

    >>> format_reward("<preferences>a</preferences>\\n<gaps>b</gaps>\\n<rewrite>c</rewrite>")
    1.0
    >>> format_reward("<rewrite>c</rewrite>")
    0.5
    >>> format_reward("<rewrite>unclosed"), format_reward("")
    (0.0, 0.0)
    """
    trajectory, _ = try_parse(output)
    if trajectory is None:
        return 0.0
    if trajectory.preferences and trajectory.gaps:
        return 1.0
    return 0.5


@dataclass(frozen=True)
class CurriculumStage:
    """One stage of the multi-context curriculum.

    Attributes:
        index: The stage's position, from 0.
        k: How many history items the stage recalls.
        steps: Optimizer steps in the stage.
    """

    index: int
    k: int
    steps: int


def curriculum(ks: Sequence[int] = (1, 2, 4, 8), steps: int | Sequence[int] = 10) -> list[
    CurriculumStage
]:
    """Return the progressive multi-context schedule: one stage per ``k``, in growing order.

    Args:
        ks: The number of recalled items per stage; must be positive and strictly increasing.
        steps: Steps per stage (one number for all, or one per stage).

    Returns:
        The stages.

    Raises:
        ValueError: For an empty, non-increasing or non-positive schedule, or mismatched steps.

    >>> [(s.k, s.steps) for s in curriculum((1, 2, 4, 8), 5)]
    [(1, 5), (2, 5), (4, 5), (8, 5)]
    >>> [s.steps for s in curriculum((1, 4), (3, 6))]
    [3, 6]
    """
    ks = list(ks)
    if not ks or any(k < 1 for k in ks) or any(b <= a for a, b in zip(ks, ks[1:])):
        raise ValueError(f"curriculum ks must be positive and strictly increasing, got {ks}")
    per_stage = [steps] * len(ks) if isinstance(steps, int) else list(steps)
    if len(per_stage) != len(ks) or any(s < 1 for s in per_stage):
        raise ValueError(f"need one positive step count per stage ({len(ks)}), got {per_stage}")
    return [CurriculumStage(i, k, s) for i, (k, s) in enumerate(zip(ks, per_stage, strict=True))]


def make_reward_funcs(spec: TaskSpec | str) -> list[Callable[..., list[float]]]:
    """Return the TRL reward functions ``[task, format]`` for a task.

    The task reward reads the dataset's ``gold`` column.

    >>> task_fn, format_fn = make_reward_funcs("LaMP_5")
    >>> task_fn(completions=["<rewrite>a b</rewrite>", "x"], gold=["a b", "a b"])
    [1.0, 0.0]
    >>> format_fn(completions=[[{"role": "assistant", "content": "<rewrite>a</rewrite>"}]])
    [0.5]
    """
    spec = get_task(spec) if isinstance(spec, str) else spec

    def task(completions: Sequence[Any], gold: Sequence[str], **_: Any) -> list[float]:
        return [task_reward(spec, completion_text(c), g) for c, g in zip(completions, gold, strict=True)]

    def format(completions: Sequence[Any], **_: Any) -> list[float]:  # noqa: A001
        return [format_reward(completion_text(c)) for c in completions]

    task.__name__ = f"task_{spec.name}"
    format.__name__ = "format"
    return [task, format]
