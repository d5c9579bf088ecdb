"""Build preference data from users' feedback events: their edits preferred over the model's output.

Input: a JSON Lines file of :class:`~langchain_rpo.feedback.FeedbackEvent` records. Output: TRL's
conversational preference records, one JSON object per line::

    DPO (paired):    {"event_id", "user", "time", "verdict",
                      "prompt": [system, user],      # the prompt the reflection model read
                      "chosen": [{"role": "assistant", "content": <trajectory>}],
                      "rejected": [{"role": "assistant", "content": <the model's output>}]}
    KTO (unpaired):  {"event_id", "user", "time", "verdict", "prompt",
                      "completion": [{"role": "assistant", "content": ...}], "label": true|false}

The prompt is :meth:`FeedbackEvent.reflection_messages`: ``build_reflection_messages`` over the
event's draft, recalled texts and request with the rewriter's cuts, exactly what inference built.

What each event gives (:func:`event_completions`):

- **The desirable completion.** When the user kept the model's own rewrite (accepted, and the
  answer was the rewrite), the model's trajectory itself. Otherwise (an edit, or an accepted
  draft), an *evidence-only* trajectory whose rewrite is the user's final text: preferences and
  gaps measured from the recalled items (as the prompt showed them) and the draft only, by the
  builder of :mod:`training.build_trajectories` (nothing the data does not show, and never the
  final text's own traits, which the model cannot see).
- **In the model's own format** (:func:`completion_fields`): a rewrite-only adapter (the bundled
  default, whose answers carry no preferences or gaps) gets ``<rewrite>`` blocks alone, as it
  was trained; a trajectory adapter gets all three blocks.
- **The undesirable completion.** The model's own output, unless the user kept it: its
  trajectory rendered in the standard format (so chosen and rejected differ in content, not in
  formatting), or its raw output when that was unusable (a fallback).
- Rejected answers (no final text) give only an undesirable completion.

So DPO gets a pair from every edit (and from an accepted draft the model failed to rewrite);
an accepted rewrite and a rejection give no pair. KTO takes every completion alone: accepted
rewrites are desirable, rejected ones undesirable, an edit gives one of each. Events whose answer
never reached the reflection model (no history yet, a recall error) give nothing: there is no
prompt the model read. Ratings are kept in the events but not used yet.

Usage::

    python -m training.build_preferences --events runs/feedback.jsonl \\
        --out runs/feedback_preferences.jsonl            # --format kto for unpaired records
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from langchain_rpo.feedback import FeedbackEvent, iter_events, utc_time
from langchain_rpo.lamp.tasks import TaskKind, TaskSpec, get_task
from langchain_rpo.prompts import truncate
from langchain_rpo.reflection import to_chat_dicts
from langchain_rpo.trajectory import FIELDS, render
from training.build_trajectories import evidence_trajectory
from training.data import write_records

__all__ = [
    "EventCompletions",
    "PreferenceConfig",
    "completion_fields",
    "event_completions",
    "main",
    "preference_records",
    "run",
]

FORMATS = ("dpo", "kto")


@dataclass
class PreferenceConfig:
    """Settings of ``build_preferences``."""

    events: str = field(metadata={"help": "JSONL of feedback events (langchain_rpo.feedback)."})
    out: str = field(metadata={"help": "Output JSONL of preference records."})
    format: str = field(
        default="dpo",
        metadata={"help": "dpo (prompt, chosen, rejected) or kto (prompt, completion, label)."},
    )
    task: str | None = field(
        default=None,
        metadata={
            "help": "A LaMP task whose kind and answer mapping shape the evidence (labels, "
            "ratings); None: free text."
        },
    )
    before: str | None = field(
        default=None,
        metadata={
            "help": "Only events strictly before this UTC ISO 8601 time (a replay never trains "
            "on what it scores next)."
        },
    )


@dataclass(frozen=True)
class EventCompletions:
    """What one event teaches: completions of its prompt the user wanted, and did not want.

    Attributes:
        prompt: The prompt the reflection model read, as chat dicts.
        desirable: The completion the user's final text asks for, or None (a rejection).
        undesirable: The model's own output when the user did not keep it, else None.
    """

    prompt: list[dict[str, str]]
    desirable: str | None
    undesirable: str | None


def completion_fields(event: FeedbackEvent) -> tuple[str, ...]:
    """The blocks of the model's own format, read from what it wrote for ``event``.

    A parsed answer with neither preferences nor gaps came from a rewrite-only adapter (the
    bundled default): its completions are the ``<rewrite>`` block alone, so the model is not
    taught a format it was not trained on, and chosen and rejected differ in content only. Any
    other answer (a trajectory, or none parsed: the prompt asks for the trajectory) gets all
    three blocks.

    >>> from langchain_rpo.trajectory import Trajectory
    >>> event = FeedbackEvent(user_id="u", verdict="rejected", draft="d", raw_reflection="x",
    ...                       trajectory=Trajectory(rewrite="T"))
    >>> completion_fields(event)
    ('rewrite',)
    """
    found = event.trajectory
    if found is not None and not found.preferences.strip() and not found.gaps.strip():
        return ("rewrite",)
    return FIELDS


def _model_output(event: FeedbackEvent) -> str | None:
    """The model's completion: its trajectory rendered, else its raw (unusable) output."""
    if event.trajectory is not None:
        return render(event.trajectory, fields=completion_fields(event))
    if event.raw_reflection is not None and event.raw_reflection.strip():
        return event.raw_reflection
    return None


def event_completions(
    event: FeedbackEvent, spec: TaskSpec | TaskKind = "generation"
) -> tuple[EventCompletions | None, str | None]:
    """Return what ``event`` teaches, or ``(None, reason)`` when it teaches nothing.

    Args:
        event: The feedback event.
        spec: The task (its kind and answer mapping shape the evidence), or a kind.

    Returns:
        ``(completions, None)``, or ``(None, reason)`` with ``reason`` one of
        ``not_reflected`` (the reflection model never ran), ``no_recalled_texts`` (the event
        cannot rebuild its prompt) or ``no_model_output`` (a rejection with nothing to reject).
    """
    if not event.reflected:
        return None, "not_reflected"
    if event.recalled_texts is None and event.recalled_ids:
        return None, "no_recalled_texts"
    prompt = to_chat_dicts(event.reflection_messages())
    model = _model_output(event)
    final = event.final_text
    if final is None:  # rejected: the user wanted none of it
        if model is None:
            return None, "no_model_output"
        return EventCompletions(prompt, None, model), None
    kept = event.rewrite is not None and event.rewrite.strip() == final.strip()
    if kept:
        return EventCompletions(prompt, model, None), None
    # What the prompt showed: the evidence may only use what the model could read.
    shown = [truncate(text, event.max_item_chars) for text in event.recalled_texts or ()]
    draft = spec.parse_answer(event.draft) if isinstance(spec, TaskSpec) else event.draft
    evidence = evidence_trajectory(spec, shown, draft, final.strip())
    chosen = render(evidence, fields=completion_fields(event))
    return EventCompletions(prompt, chosen, model), None


def _assistant(content: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": content}]


def preference_records(
    events: Iterable[FeedbackEvent],
    format: str = "dpo",
    spec: TaskSpec | TaskKind = "generation",
) -> tuple[list[dict[str, Any]], Counter[str]]:
    """Turn events into DPO or KTO records.

    Args:
        events: The feedback events.
        format: ``dpo`` (pairs) or ``kto`` (unpaired, labelled).
        spec: The task, or a kind (see :func:`event_completions`).

    Returns:
        The records and a counter of the events that gave none, by reason.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}.")
    records: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    for event in events:
        found, reason = event_completions(event, spec)
        if found is None:
            skipped[reason or "unknown"] += 1
            continue
        head = {
            "event_id": event.event_id,
            "user": event.user_id,
            "time": event.time,
            "verdict": event.verdict.value,
            "prompt": found.prompt,
        }
        if format == "dpo":
            if found.desirable is None or found.undesirable is None:
                skipped["no_pair:" + event.verdict.value] += 1
                continue
            if found.desirable == found.undesirable:
                skipped["identical"] += 1
                continue
            records.append(
                {
                    **head,
                    "chosen": _assistant(found.desirable),
                    "rejected": _assistant(found.undesirable),
                }
            )
        else:
            for completion, label in ((found.desirable, True), (found.undesirable, False)):
                if completion is not None:
                    records.append({**head, "completion": _assistant(completion), "label": label})
    return records, skipped


def run(config: PreferenceConfig) -> dict[str, Any]:
    """Build and write the records of ``config``; return the summary it also writes."""
    started = time.perf_counter()
    spec: TaskSpec | TaskKind = get_task(config.task) if config.task else "generation"
    before = utc_time(config.before) if config.before else None  # compared as event times are
    events = [e for e in iter_events(config.events) if before is None or e.time < before]
    records, skipped = preference_records(events, config.format, spec)
    out = Path(config.out)
    write_records(records, out)
    summary: dict[str, Any] = {
        "format": config.format,
        "events": len(events),
        "by_verdict": dict(Counter(e.verdict.value for e in events)),
        "users": len({e.user_id for e in events}),
        "records": len(records),
        "skipped": dict(skipped),
        "seconds": round(time.perf_counter() - started, 2),
        "config": asdict(config),
    }
    if config.format == "kto":
        summary["desirable"] = sum(r["label"] for r in records)
    out.with_suffix(".summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse the arguments (or a YAML ``--config``), build the records, print the counts."""
    from trl import TrlParser

    (config,) = TrlParser((PreferenceConfig,)).parse_args_and_config(args=argv)
    summary = run(config)
    print(
        f"{summary['records']} {config.format} records from {summary['events']} events "
        f"({summary['by_verdict']}); skipped: {summary['skipped'] or 0}; wrote {config.out}",
        file=sys.stderr,
    )
    return summary


if __name__ == "__main__":
    main()
