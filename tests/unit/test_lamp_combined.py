"""``rpo eval`` across sets, the paired bootstrap, and the adapter's settings in the harness."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models import FakeListChatModel
from pydantic import Field
from test_lamp_harness import RecordingModel, config, make_split

from langchain_rpo.adapter_settings import DEFAULT_K, LAMP_ITEM_CHARS, AdapterSettings
from langchain_rpo.cli import main
from langchain_rpo.lamp.bootstrap import paired_bootstrap
from langchain_rpo.lamp.combined import POOLED, combine, method_pairs, run_sets
from langchain_rpo.lamp.harness import run_eval
from langchain_rpo.lamp.sets import SETS, parse_sets

TRAJECTORY = (
    "<preferences>short</preferences><gaps>long</gaps><rewrite>Title: Improving wheels</rewrite>"
)


class TrainedReflection(FakeListChatModel):
    """A fake reflection model that records its prompts and exposes adapter settings."""

    responses: list[str] = Field(default_factory=lambda: [TRAJECTORY])
    adapter_settings: Any = None
    prompts: list[str] = Field(default_factory=list)

    def _call(self, messages: Any, *args: Any, **kwargs: Any) -> str:
        self.prompts.append(str(messages[-1].content))
        return TRAJECTORY


@pytest.fixture
def split(tmp_path: Path) -> tuple[Path, Path]:
    return make_split(tmp_path)


# --------------------------------------------------------------------------- the bootstrap


def test_the_pooled_bootstrap_resamples_within_each_set() -> None:
    # Set x: B is always 0.1 better; set y: always equal. Stratified resamples keep 4 x and
    # 4 y questions, so the pooled gain never moves; pooled resamples would.
    a = [0.5] * 8
    b = [0.6] * 4 + [0.5] * 4
    strata = ["x"] * 4 + ["y"] * 4
    stratified = paired_bootstrap("rouge-L", a, b, strata=strata, resamples=200)
    assert stratified.gain == pytest.approx(0.1)
    assert stratified.low == pytest.approx(0.1) and stratified.high == pytest.approx(0.1)
    pooled = paired_bootstrap("rouge-L", a, b, resamples=200)
    assert pooled.low < 0.1 < pooled.high
    assert pooled.better == (4, 0, 4)
    with pytest.raises(ValueError, match="one stratum per question"):
        paired_bootstrap("rouge-L", a, b, strata=["x"])


def test_compare_runs_uses_the_harness_bootstrap() -> None:
    from benchmarks import compare_runs
    from langchain_rpo.lamp import bootstrap

    assert compare_runs.paired_bootstrap is bootstrap.paired_bootstrap


def test_method_pairs() -> None:
    assert method_pairs(["zero", "rpo-base", "rpo"]) == [
        ("zero", "rpo-base"),
        ("zero", "rpo"),
        ("rpo-base", "rpo"),
    ]
    assert method_pairs(["rag", "nearest"]) == []


# --------------------------------------------------------------------------- naming sets


def test_sets_are_named_by_bundled_name_folder_or_name_and_folder(tmp_path: Path) -> None:
    (tmp_path / "eip").mkdir()
    (tmp_path / "other").mkdir()
    found = parse_sets(["pep", f"{tmp_path / 'eip'},go={tmp_path / 'other'}"])
    assert [s.name for s in found] == ["pep", "eip", "go"]
    assert found[0] is SETS["pep"]
    assert found[2].files("dev")[0] == tmp_path / "other" / "dev_questions.json"
    with pytest.raises(ValueError, match="--set must be one of pep, or a folder"):
        parse_sets(["nope"])
    with pytest.raises(ValueError, match="twice"):
        parse_sets([str(tmp_path / "eip"), f"eip={tmp_path / 'other'}"])
    with pytest.raises(ValueError, match="no such folder"):
        parse_sets([f"x={tmp_path / 'missing'}"])


# --------------------------------------------------------------------------- several sets


@pytest.fixture
def two_sets(tmp_path: Path) -> list:
    for name, n in (("alpha", 5), ("beta", 3)):
        (tmp_path / name).mkdir()
        make_split(tmp_path / name, n=n)
    return parse_sets([str(tmp_path / "alpha"), str(tmp_path / "beta")])


def test_run_sets_writes_one_combined_table_json_and_chart(two_sets, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    base = config((Path("q"), Path("o")), out, methods=("zero", "rpo-k0", "rpo", "nearest"))
    combined = run_sets(
        base,
        two_sets,
        base_model=RecordingModel(),
        reflection=TrainedReflection(),
        embeddings=DeterministicFakeEmbedding(size=16),
        progress=False,
    )
    assert list(combined.runs) == ["alpha", "beta"]
    assert (out / "alpha" / "rpo_outputs.json").is_file()
    assert (out / "beta" / "rpo-k0_outputs.json").is_file()
    # Pooled: the mean over all 8 questions, so alpha (5) weighs more than beta (3).
    for method in ("zero", "rpo", "nearest"):
        row = combined.scores["rouge-L"][method]
        assert row[POOLED] == pytest.approx((5 * row["alpha"] + 3 * row["beta"]) / 8)
        assert row["alpha"] == pytest.approx(combined.runs["alpha"].metrics[method]["rouge-L"])
    assert combined.pairs == [("zero", "rpo-k0"), ("zero", "rpo"), ("zero", "nearest"),
                              ("rpo-k0", "rpo")]  # fmt: skip
    gain = combined.gains["zero -> rpo"]["rouge-L"][POOLED]
    assert gain.low <= gain.gain <= gain.high
    table = (out / "combined.md").read_text()
    assert "| rpo-k0 -> rpo |" in table and "alpha (5)" in table and f"{POOLED} (8)" in table
    assert "the mean over all questions of all sets" in table
    summary = json.loads((out / "combined.json").read_text())
    assert summary["sets"]["beta"]["n"] == 3 and summary["metrics"] == ["rouge-1", "rouge-L"]
    assert set(summary["gains"]["rpo-k0 -> rpo"]["rouge-1"]) == {"alpha", "beta", POOLED}
    assert (out / "combined.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_combine_refuses_runs_of_different_methods(two_sets, tmp_path: Path) -> None:
    runs = {}
    for one, methods in zip(two_sets, (("zero",), ("nearest",)), strict=True):
        q, o = one.files("dev")
        runs[one.name] = run_eval(
            config((q, o), tmp_path / one.name, methods=methods),
            base_model=RecordingModel(),
            progress=False,
        )
    with pytest.raises(ValueError, match="same --methods"):
        combine(runs, tmp_path)


def test_combine_runs_puts_methods_of_different_runs_side_by_side(
    two_sets, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """benchmarks.combine_runs: one method of each run, under its own label, with chosen pairs."""
    from benchmarks import combine_runs

    first, second = tmp_path / "first", tmp_path / "second"
    for out, methods in ((first, ("zero", "nearest")), (second, ("nearest",))):
        run_sets(config((Path("q"), Path("o")), out, methods=methods), two_sets,
                 base_model=RecordingModel(), progress=False)  # fmt: skip
    sets = ",".join(f"{s.name}={s.folder()}" for s in two_sets)
    out = tmp_path / "side_by_side"
    result = combine_runs.main(
        ["--set", sets, "--run", f"zero={first}", "--run", f"a={first}:nearest",
         "--run", f"b={second}:nearest", "--pair", "a:b", "--pair", "zero:b",
         "--out", str(out), "--resamples", "50"]
    )  # fmt: skip
    assert result.pairs == [("a", "b"), ("zero", "b")]
    # The same method answered the same questions in both runs: no gain, no question worse.
    same = result.gains["a -> b"]["rouge-L"][POOLED]
    assert same.gain == 0 and same.low == same.high == 0
    expected = json.loads((first / "combined.json").read_text())["scores"]["rouge-L"]["nearest"]
    assert result.scores["rouge-L"]["b"] == pytest.approx(expected)
    assert "| zero -> b |" in (out / "combined.md").read_text()
    assert "| a -> b |" in capsys.readouterr().out
    with pytest.raises(ValueError, match="did not run"):
        combine(result.runs, tmp_path / "bad", pairs=[("a", "nope")])
    with pytest.raises(SystemExit):
        combine_runs.main(["--set", sets, "--run", "no-equals-sign", "--out", str(out)])


def test_the_cli_runs_several_sets_and_checks_them_all_first(
    two_sets, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alpha, beta = (str(s.folder()) for s in two_sets)
    out = tmp_path / "cli"
    argv = ["eval", "--out", str(out), "--methods", "nearest", "--no-progress"]
    assert main([*argv, "--set", alpha, "--set", f"b={beta}"]) == 0
    printed = capsys.readouterr().out
    assert "### rouge-L" in printed and "combined.md" in printed
    assert (out / "b" / "nearest_outputs.json").is_file()
    # A missing file in the last set fails before the first set runs.
    (tmp_path / "broken").mkdir()
    assert (
        main([*argv, "--set", f"{alpha},{tmp_path / 'broken'}", "--out", str(tmp_path / "x")]) == 1
    )
    assert "dev_questions.json: no such file" in capsys.readouterr().err
    assert not (tmp_path / "x" / "alpha").exists()


# --------------------------------------------------------------------------- adapter settings


def test_rpo_takes_k_and_the_item_cut_from_the_adapter(split, tmp_path: Path) -> None:
    reflection = TrainedReflection(
        adapter_settings=AdapterSettings(k=1, max_item_chars=12, max_new_tokens=30)
    )
    out = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        result = run_eval(
            config(split, out, methods=("rag", "rpo"), k=None),
            base_model=RecordingModel(),
            reflection=reflection,
            embeddings=DeterministicFakeEmbedding(size=16),
            progress=False,
        )
    assert all(p.count('" is a title for "') == 1 for p in reflection.prompts)  # k=1
    assert all("A proposal…" in p for p in reflection.prompts)  # abstracts cut at 12
    rpo = json.loads((out / "metrics.json").read_text())["settings"]["rpo"]
    assert rpo["k"] == 1 and rpo["max_item_chars"] == 12
    assert rpo["adapter_settings"]["max_new_tokens"] == 30
    # rag is the base model's: the library defaults, not the adapter's.
    assert "k=4 (rag), 1 (rpo), max_item_chars=400 (rag), 12 (rpo)" in result.table
    assert (DEFAULT_K, LAMP_ITEM_CHARS) == (4, 400)


def test_an_item_cut_that_differs_from_training_warns(split, tmp_path: Path) -> None:
    reflection = TrainedReflection(adapter_settings=AdapterSettings(k=2, max_item_chars=12))
    with pytest.warns(UserWarning, match=r"rpo eval: max_item_chars=None differs .*=12"):
        run_eval(
            config(split, tmp_path / "run", methods=("rpo",), max_item_chars=0),
            base_model=RecordingModel(),
            reflection=reflection,
            embeddings=DeterministicFakeEmbedding(size=16),
            progress=False,
        )
