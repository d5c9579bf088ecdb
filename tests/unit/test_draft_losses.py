"""benchmarks.draft_losses: where the rewrite loses to the draft, and what a gate could do."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding
from test_lamp_combined import TrainedReflection
from test_lamp_harness import RecordingModel, config, make_split
from tiny_models import TAUGHT_TRAJECTORY

from benchmarks import draft_losses
from benchmarks.draft_losses import ConfidenceScorer, Row, auc, gate, load_rows, rebuild_messages
from langchain_rpo.lamp.combined import run_sets
from langchain_rpo.lamp.sets import parse_sets
from langchain_rpo.prompts import build_reflection_messages


@pytest.fixture()
def run(tmp_path: Path) -> tuple[Path, list, TrainedReflection]:
    """Two tiny sets answered by zero, rpo-k0 and rpo (a reflection model with one answer)."""
    for name, n in (("alpha", 5), ("beta", 3)):
        (tmp_path / name).mkdir()
        make_split(tmp_path / name, n=n)
    sets = parse_sets([str(tmp_path / "alpha"), str(tmp_path / "beta")])
    out = tmp_path / "run"
    reflection = TrainedReflection()
    run_sets(
        config((Path("q"), Path("o")), out, methods=("zero", "rpo-k0", "rpo")),
        sets,
        base_model=RecordingModel(),
        reflection=reflection,
        embeddings=DeterministicFakeEmbedding(size=16),
        progress=False,
    )
    return out, sets, reflection


def test_report_counts_losses_and_gates(run, tmp_path: Path, capsys) -> None:
    out, sets, _ = run
    report = draft_losses.main(
        ["--set", ",".join(f"{s.name}={s.folder()}" for s in sets), "--run", str(out),
         "--out", str(tmp_path / "report")]
    )  # fmt: skip
    rows = [r for s in sets for r in load_rows(s, "dev", out).rows]
    assert len(rows) == 8
    # The reflection answers "Improving wheels" everywhere: it wins where the topic is wheels
    # and loses elsewhere, so both kinds exist.
    worse = sum(r.loss for r in rows)
    assert 0 < worse < 8
    pooled = report["losses"]["pooled"]
    assert pooled["worse"] == worse and pooled["questions"] == 8
    assert pooled["worse"] + pooled["equal"] + pooled["better"] == 8
    no_gate = sum(r.rewrite for r in rows) / 8
    signals = report["gates"]
    assert set(signals) == {"length", "draft_overlap", "request_overlap", "history_overlap",
                            "k0_agreement", "random"}  # fmt: skip
    for name, g in signals.items():
        assert g["curve"][0]["pooled"] == pytest.approx(no_gate)  # keep 0%: the rewrites
        shares = [round(share * 8) / 8 for share in draft_losses.SHARES]
        assert [c["kept"] for c in g["curve"]] == pytest.approx(shares)
        if name != "random":
            assert 0 <= g["auc"] <= 1
    # The oracle keeps the draft exactly where it scores higher: no loss left, a better score.
    assert report["oracle"]["worst_loss_rate"] == 0
    assert report["oracle"]["pooled"] == pytest.approx(
        sum(max(r.draft, r.rewrite) for r in rows) / 8
    )
    written = tmp_path / "report"
    assert json.loads((written / "draft_losses.json").read_text())["losses"]["pooled"] == pooled
    assert (written / "draft_losses.png").stat().st_size > 0
    table = (written / "draft_losses.md").read_text()
    assert "| alpha | 5 |" in table and "| random | - |" in table
    assert table in capsys.readouterr().out


def test_rebuilt_prompts_are_the_ones_the_reflection_model_saw(run) -> None:
    out, sets, reflection = run
    seen = set(reflection.prompts)
    rebuilt, kept = 0, 0
    for one in sets:
        answers = load_rows(one, "dev", out)
        settings = json.loads((out / one.name / "metrics.json").read_text())["settings"]
        for row in answers.rows:
            info = answers.infos[row.id]
            if info["fallback_reason"]:  # the draft was kept: no prompt was built
                kept += 1
                continue
            messages = rebuild_messages(answers.task, answers.questions[row.id], info, settings)
            assert messages[-1].content in seen
            rebuilt += 1
    assert (rebuilt, kept) == (6, 2)  # each set's last user has no history


def test_auc_and_gate_on_hand_made_rows() -> None:
    rows = [
        Row("a", "1", draft=0.5, rewrite=0.0, signals={"s": 0.1}),  # a loss, low signal
        Row("a", "2", draft=0.2, rewrite=0.6, signals={"s": 0.9}),
        Row("b", "3", draft=0.4, rewrite=0.3, signals={"s": 0.2}),  # a loss, low signal
        Row("b", "4", draft=0.1, rewrite=0.1, signals={"s": 0.2}),  # a tie, same value
    ]
    assert auc(rows, "s") == pytest.approx((1 + 1 + 1 + 0.5) / 4)
    nothing = gate(rows, lambda r: False)
    assert nothing["sets"]["a"]["loss_rate"] == 0.5 and nothing["worst_loss_rate"] == 0.5
    oracle = gate(rows, lambda r: r.loss)
    assert oracle["worst_loss_rate"] == 0 and oracle["kept"] == 0.5
    assert oracle["pooled"] == pytest.approx((0.5 + 0.6 + 0.4 + 0.1) / 4)
    assert math.isnan(auc(rows[1:2], "s"))  # no loss: no AUC


def test_confidence_prefers_the_rewrite_the_model_learned(taught_model, tiny_tokenizer) -> None:
    """A real (tiny, taught) model: its learned rewrite is likelier than an unrelated one."""
    from langchain_rpo.reflection import ReflectionModel

    scorer = ConfidenceScorer(ReflectionModel.from_model(taught_model, tiny_tokenizer))
    messages = build_reflection_messages("A draft answer.", ["Rust 1.75 released"], "What is new?")
    learned = scorer(messages, TAUGHT_TRAJECTORY.rewrite)
    other = scorer(messages, "Completely unrelated words here")
    assert other < learned <= 0
