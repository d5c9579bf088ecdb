"""The LaMP metrics against hand-computed values, edge cases included."""

from __future__ import annotations

import math

import pytest

from langchain_rpo.lamp.metrics import accuracy, evaluate, macro_f1, mae_rmse, rating_value, rouge
from langchain_rpo.lamp.tasks import get_task


def test_accuracy_strips_and_counts_out_of_set_as_wrong() -> None:
    assert accuracy(["[1]", " [2] ", "[1]", "x"], ["[1]", "[1]", "[1]", "[2]"]) == 0.5


def test_macro_f1_by_hand() -> None:
    # [1]: TP=2 (rows 0, 2), FP=0, FN=1 (row 1)  -> F1 = 4/5
    # [2]: TP=0, FP=1 (row 1), FN=1 (row 3: "x" is out of the set) -> F1 = 0
    preds = ["[1]", "[2]", "[1]", "x"]
    golds = ["[1]", "[1]", "[1]", "[2]"]
    assert macro_f1(preds, golds, ["[1]", "[2]"]) == pytest.approx(0.4)


def test_macro_f1_averages_over_every_label_of_the_set() -> None:
    # c is in neither golds nor predictions: its F1 is 0 and still counts (official labels=...).
    assert macro_f1(["a", "b"], ["a", "b"], ["a", "b", "c"]) == pytest.approx(2 / 3)
    # Three labels, partial: a: TP1 FP1 FN0 -> 2/3; b: TP0 FP0 FN1 -> 0; c: TP1 -> 1.
    assert macro_f1(["a", "a", "c"], ["a", "b", "c"], ["a", "b", "c"]) == pytest.approx(
        (2 / 3 + 0 + 1) / 3
    )


def test_macro_f1_out_of_set_prediction_is_no_false_positive() -> None:
    # "zzz" adds FN for a only; b keeps precision 1.
    assert macro_f1(["zzz", "b"], ["a", "b"], ["a", "b"]) == pytest.approx((0 + 1) / 2)


def test_rating_value_replaces_unparsable_by_the_farther_extreme() -> None:
    assert rating_value("4", "1") == 4.0
    assert rating_value(" 2.5 ", "1") == 2.5
    assert rating_value("great", "2") == 5.0  # |5-2| > |1-2|
    assert rating_value("great", "4") == 1.0
    assert rating_value("", "3") == 5.0  # a tie picks 5, as the official script does
    assert rating_value("nan", "5") == 1.0


def test_mae_rmse_by_hand() -> None:
    # errors: |5-4| = 1; "x" with gold 2 -> 5, error 3; 0
    mae, rmse = mae_rmse(["5", "x", "3"], ["4", "2", "3"])
    assert mae == pytest.approx(4 / 3)
    assert rmse == pytest.approx(math.sqrt(10 / 3))


def test_rouge_by_hand() -> None:
    gold = "the cat sat on the mat"
    # 1: unigrams the/cat/sat all match: P=1, R=3/6 -> F=2/3; LCS 3 -> same.
    # 2: mat/on/cat match: ROUGE-1 F=2/3; LCS in order is 1 token: P=1/3, R=1/6 -> F=2/9.
    scores = rouge(["the cat sat", "mat on cat"], [gold, gold])
    assert scores["rouge-1"] == pytest.approx(2 / 3)
    assert scores["rouge-L"] == pytest.approx((2 / 3 + 2 / 9) / 2)


def test_rouge_edge_cases() -> None:
    assert rouge(["The Cat!"], ["the cat"]) == {
        "rouge-1": 1.0,
        "rouge-L": 1.0,
    }  # lowercased, no punctuation
    assert rouge([""], ["the cat"]) == {"rouge-1": 0.0, "rouge-L": 0.0}
    # No stemmer: "cats" does not match "cat".
    assert rouge(["cats"], ["cat"])["rouge-1"] == 0.0


def test_metric_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="2 predictions for 1 golds"):
        accuracy(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no examples"):
        rouge([], [])


def test_evaluate_dispatches_by_task_and_matches_ids() -> None:
    golds = {"1": "[1]", "2": "[2]"}
    assert evaluate("LaMP_1", {"2": "[2]", "1": "[2]"}, golds) == {
        "accuracy": 0.5,
        "f1": pytest.approx((0 + 2 / 3) / 2),
    }
    assert evaluate("LaMP_3", {"a": "3"}, {"a": "5"}) == {"MAE": 2.0, "RMSE": 2.0}
    result = evaluate("LaMP_5", {"a": "x y"}, {"a": "x z"})
    assert tuple(result) == get_task("LaMP_5").metrics
    assert result["rouge-1"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="1 gold ids have no prediction"):
        evaluate("LaMP_5", {"a": "x"}, {"a": "x", "b": "y"})
