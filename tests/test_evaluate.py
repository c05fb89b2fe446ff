"""Holdout metrics on hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clv import evaluate
from clv.errors import ClvError


def test_errors_by_hand():
    predicted, actual = [1.0, 2.0, 4.0], [1.0, 3.0, 1.0]
    assert evaluate.mae(predicted, actual) == pytest.approx((0 + 1 + 3) / 3)
    assert evaluate.rmse(predicted, actual) == pytest.approx(math.sqrt((0 + 1 + 9) / 3))
    assert evaluate.percent_error(1653.0, 1882.0) == pytest.approx(-12.168, abs=1e-3)
    assert evaluate.percent_error(1.0, 0.0) is None


def test_spearman_by_hand():
    # ranks of predicted 1, 2, 3, 4; of actual 1, 3, 2, 4: d = 0, 1, 1, 0 -> 1 - 6 * 2 / (4 * 15) = 0.8
    assert evaluate.spearman([10, 20, 30, 40], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert evaluate.spearman([1, 2, 3], [5, 5, 5]) is None
    # ties share their mean rank: actual ranks 1.5, 1.5, 3 against 1, 2, 3 -> r = 0.866...
    assert evaluate.spearman([1, 2, 3], [0, 0, 7]) == pytest.approx(math.sqrt(3) / 2)


def test_normalized_gini_by_hand():
    actual = np.array([0.0, 10.0, 30.0, 60.0])
    assert evaluate.normalized_gini(actual, actual) == pytest.approx(1.0)
    assert evaluate.normalized_gini(-actual, actual) == pytest.approx(-1.0)
    # ordered by actual: cumulative shares 0.6, 0.9, 1.0, 1.0 -> sum/4 - 5/8 = 0.875 - 0.625 = 0.25
    # ordered by the prediction (10, 60 swapped): 0.1, 0.4, 1.0, 1.0 -> 0.625 - 0.625 = 0
    assert evaluate.normalized_gini([0.0, 4.0, 3.0, 1.0], actual) == pytest.approx(0.0)
    assert evaluate.normalized_gini([1, 2], [0, 0]) is None


def test_decile_calibration_groups_by_prediction():
    predicted = np.arange(20, dtype=float)
    actual = predicted * 2
    table = evaluate.decile_calibration(predicted, actual)
    assert table["customers"].tolist() == [2] * 10
    assert table.loc[0, "mean_predicted"] == pytest.approx(18.5)  # the top decile: 19 and 18
    assert table.loc[0, "mean_actual"] == pytest.approx(37.0)
    assert table.loc[9, "mean_predicted"] == pytest.approx(0.5)


def test_brier_and_auc_by_hand():
    p, outcome = [0.9, 0.2, 0.6, 0.4], [1, 0, 0, 1]
    assert evaluate.brier_score(p, outcome) == pytest.approx((0.01 + 0.04 + 0.36 + 0.36) / 4)
    # positives score 0.9 and 0.4, negatives 0.2 and 0.6: pairs won 0.9>0.2, 0.9>0.6, 0.4>0.2 -> 3 / 4
    assert evaluate.auc(p, outcome) == pytest.approx(0.75)
    assert evaluate.auc([0.5, 0.5], [1, 0]) == pytest.approx(0.5)  # a tie counts half
    assert evaluate.auc([0.1, 0.2], [1, 1]) is None


def test_coverage_and_information_criteria():
    assert evaluate.coverage([0, 1, 2], [2, 1, 3], [2, 2, 3]) == pytest.approx(2 / 3)
    ic = evaluate.information_criteria(-9582.43, 4, 2357)
    assert ic["aic"] == pytest.approx(19172.86)
    assert ic["bic"] == pytest.approx(4 * math.log(2357) + 19164.86)


def test_bad_inputs_are_named():
    with pytest.raises(ClvError, match="same length"):
        evaluate.mae([1, 2], [1])
    with pytest.raises(ClvError, match="1 row"):
        evaluate.rmse([1, float("nan")], [1, 2])
