"""Forecast combinations: the arithmetic on hand-made examples, the keep-or-drop rule, weights without
look-ahead (against an independent computation from the per-origin scores), and the files they go to."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clv.config import load_config
from clv.errors import ClvError
from clv.evaluate.combination import (
    Verdict,
    combine_forecasts,
    combine_predictions,
    equal_weights,
    inverse_error_weights,
    squared_errors,
    verdict,
)
from clv.evaluate.job import NEEDS_ORIGINS, evaluate
from clv.report.evaluation import write_evaluation

ROOT = Path(__file__).resolve().parents[1]
CDNOW = ROOT / "configs" / "cdnow.yaml"
O1, O2, O3 = dt.date(1997, 7, 31), dt.date(1997, 8, 31), dt.date(1997, 9, 30)


def test_weights_by_hand():
    np.testing.assert_allclose(equal_weights(4), [0.25, 0.25, 0.25, 0.25])
    # 1/1 : 1/2 : 1/4 = 4 : 2 : 1
    np.testing.assert_allclose(inverse_error_weights([1.0, 2.0, 4.0]), [4 / 7, 2 / 7, 1 / 7], rtol=1e-15)
    np.testing.assert_allclose(inverse_error_weights([3.0, 0.0, 0.0]), [0.0, 0.5, 0.5])  # no error: all the weight
    for bad in ([], [1.0, math.nan], [1.0, -1.0]):
        with pytest.raises(ClvError, match="squared errors"):
            inverse_error_weights(bad)
    with pytest.raises(ClvError, match="at least one"):
        equal_weights(0)


def test_combined_forecasts_by_hand():
    f = np.array([[1.0, 2.0, 0.0], [3.0, 6.0, 4.0]])
    np.testing.assert_allclose(combine_forecasts(f, np.array([0.25, 0.75])), [2.5, 5.0, 3.0])
    with pytest.raises(ClvError, match="sum to 1"):
        combine_forecasts(f, np.array([0.5, 0.6]))
    with pytest.raises(ClvError, match="non-negative"):
        combine_forecasts(f, np.array([1.5, -0.5]))
    with pytest.raises(ClvError, match=r"\(m, n\)"):
        combine_forecasts(f, np.array([1.0]))


def _frame(clv, p_alive, purchases, lo=None):
    frame = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d"],
            "frequency": [0, 1, 2, 5],
            "clv": clv,
            "tier": ["x"] * 4,
            "p_alive": p_alive,
            "p_purchase": [0.1, 0.5, 0.6, 0.9],
            "predicted_purchases": purchases,
            "actual_purchases": [0.0, 1.0, 0.0, 4.0],
        }
    )
    if lo is not None:
        frame["predicted_purchases_lo"] = lo
    return frame


def test_combined_frame_by_hand():
    config = load_config(
        CDNOW, ["tiers.levels=[{label: top, share: 0.25}, {label: rest, share: 0.75}]", "tiers.min_size=1"]
    )
    a = _frame([10.0, 20.0, 30.0, 40.0], [0.2, 0.4, 0.6, 0.8], [0.0, 1.0, 1.0, 2.0], lo=[0.0, 0.0, 0.0, 1.0])
    b = _frame([50.0, 0.0, 10.0, 0.0], [0.6, 0.8, 1.0, 0.4], [2.0, 1.0, 3.0, 6.0])
    out = combine_predictions(config, {"a": a, "b": b}, {"a": 0.75, "b": 0.25})
    np.testing.assert_allclose(out["clv"], [20.0, 15.0, 25.0, 30.0])  # 0.75 a + 0.25 b
    np.testing.assert_allclose(out["p_alive"], [0.3, 0.5, 0.7, 0.7])
    np.testing.assert_allclose(out["predicted_purchases"], [0.5, 1.0, 1.5, 3.0])
    np.testing.assert_allclose(out["p_purchase"], a["p_purchase"])  # the same in both
    assert list(out["tier"]) == ["rest", "rest", "rest", "top"]  # the top quarter by the combined CLV
    assert "predicted_purchases_lo" not in out  # quantiles are not averaged
    assert list(out["actual_purchases"]) == [0.0, 1.0, 0.0, 4.0]
    # errors 0.5, 0, 1.5, -1: 0.25 + 0 + 2.25 + 1
    assert squared_errors(out) == pytest.approx(3.5, abs=1e-12)
    with pytest.raises(ClvError, match="other customers"):
        combine_predictions(config, {"a": a, "b": b.iloc[::-1]}, {"a": 0.5, "b": 0.5})


def test_keep_only_what_beats_the_best_single_fit():
    singles = {"A": {O1: 0.85, O2: 0.88}, "B": {O1: 0.90, O2: 0.95}}
    kept = verdict("equal_weight", {O1: 0.80, O2: 0.90}, singles, "mae_purchases")
    assert kept.kept and kept.mean == pytest.approx(0.85) and kept.best_single == "A"
    assert kept.best_single_mean == pytest.approx(0.865) and kept.origins == (O1, O2)
    assert kept.reason == "kept: mean mae_purchases 0.8500 over 2 origins, below 0.8650 of A, the best single fit"
    tied = verdict("equal_weight", {O1: 0.85, O2: 0.88}, singles, "mae_purchases")
    assert not tied.kept and tied.reason.startswith("dropped: mean mae_purchases 0.8650 over 2 origins, not below")
    # higher is better for the Gini
    gini = verdict("equal_weight", {O1: 0.70, O2: 0.70}, {"A": {O1: 0.6, O2: 0.75}}, "gini_value")
    assert gini.kept and "above 0.6750" in gini.reason
    # scored at the second origin only (weights from the first): compared on that origin alone
    late = verdict("backtest_weighted", {O2: 0.87}, singles, "mae_purchases")
    assert late.kept and late.origins == (O2,) and late.best_single_mean == pytest.approx(0.88)
    assert "over 1 origin," in late.reason


def test_a_combination_without_a_score_is_dropped_and_says_why():
    singles = {"A": {O1: 0.85}}
    none = verdict("backtest_weighted", {}, singles, "mae_purchases")
    assert none == Verdict(
        "backtest_weighted",
        False,
        "mae_purchases",
        (),
        None,
        None,
        None,
        "dropped: no origin to back-test it on (its weights need an earlier origin)",
    )
    aic = verdict("equal_weight", {O1: math.nan}, {"A": {O1: 100.0}}, "aic")
    assert not aic.kept and aic.reason == "dropped: it has no aic (a statistic of a fit's likelihood)"


@pytest.fixture(scope="module")
def rolling_evaluation():
    """CDNOW, two models, three origins (the last the run's own calibration end)."""
    return evaluate(load_config(CDNOW, ["evaluation.models=[bgnbd, pareto_nbd]", "evaluation.rolling=3"]))


def test_weights_come_only_from_earlier_origins(rolling_evaluation):
    """The backtest weights at each origin, recomputed from the per-origin RMSE and customer counts of the
    origins strictly before it (an SSE is customers x RMSE^2): a weight that saw its own origin would differ."""
    ev = rolling_evaluation
    origins = ev.origins
    assert origins[-1] == ev.config.time.calibration_end
    rows = ev.per_origin
    labels = [r.candidate.label for r in ev.results]
    sse = {
        (o, label): float(row["customers"] * row["rmse_purchases"] ** 2)
        for o in origins
        for label in labels
        for _, row in rows[(rows["origin"] == o.isoformat()) & (rows["candidate"] == label)].iterrows()
    }
    weighted = ev.combinations.per_origin["backtest_weighted"]
    assert origins[0] not in weighted  # nothing earlier to weigh by
    for k, origin in enumerate(origins[1:], start=1):
        totals = np.array([sum(sse[(o, label)] for o in origins[:k]) for label in labels])
        expected = (1 / totals) / (1 / totals).sum()
        np.testing.assert_allclose([weighted[origin]["weights"][label] for label in labels], expected, rtol=1e-12)
    final = {f.name: f for f in ev.combinations.forecasts}["backtest_weighted"]
    assert final.weights_from == tuple(origins[:-1])
    assert final.weights == weighted[origins[-1]]["weights"]
    # the same own-origin error included would move the weights
    with_own = np.array([sum(sse[(o, label)] for o in origins) for label in labels])
    assert not np.allclose([final.weights[label] for label in labels], (1 / with_own) / (1 / with_own).sum())


def test_verdicts_use_the_per_origin_scores(rolling_evaluation):
    ev = rolling_evaluation
    rows = ev.per_origin.set_index(["candidate", "origin"])["mae_purchases"]
    for name, v in ev.combinations.verdicts.items():
        label = {"equal_weight": "equal-weight average", "backtest_weighted": "backtest-weighted average"}[name]
        scored = [o.isoformat() for o in v.origins]
        assert v.mean == pytest.approx(float(np.mean([rows[(label, o)] for o in scored])), rel=1e-12)
        best = min(float(np.mean([rows[(r.candidate.label, o)] for o in scored])) for r in ev.results)
        assert v.best_single_mean == pytest.approx(best, rel=1e-12)
        assert v.kept == (v.mean < best)
        kept = label in set(ev.leaderboard["candidate"])
        assert kept == v.kept  # only a winner is ranked
    assert len(ev.combinations.verdicts["equal_weight"].origins) == 3
    assert len(ev.combinations.verdicts["backtest_weighted"].origins) == 2


def test_the_files_hold_the_combinations(rolling_evaluation, tmp_path):
    ev = rolling_evaluation
    ev.config = ev.config.model_copy(
        update={"output": ev.config.output.model_copy(update={"reports_dir": str(tmp_path)})}
    )
    folder = write_evaluation(ev)
    summary = json.loads((folder / "metrics.json").read_text())
    entries = {e["combination"]: e for e in summary["combinations"]["entries"]}
    assert set(entries) == {"equal_weight", "backtest_weighted"}
    assert "Bates & Granger 1969" in summary["combinations"]["rules"]["backtest_weighted"]
    for name, entry in entries.items():
        assert entry["reason"].startswith("kept" if entry["kept"] else "dropped")
        assert entry["metrics"]["customers"] == 2357 and entry["weights_from_origins"] == (
            [] if name == "equal_weight" else [o.isoformat() for o in ev.origins[:-1]]
        )
    predictions = pd.read_parquet(folder / "predictions.parquet")
    # the equal-weight column is the mean of the fits' columns, recomputed from the file
    for column in ("predicted_purchases", "clv", "p_alive", "p_purchase", "predicted_revenue"):
        mean = (predictions[f"bgnbd_mle__{column}"] + predictions[f"pareto_nbd_mle__{column}"]) / 2
        np.testing.assert_allclose(predictions[f"equal_weight__{column}"], mean, rtol=1e-12)
    mae = float(np.mean(np.abs(predictions["equal_weight__predicted_purchases"] - predictions["actual_purchases"])))
    assert entries["equal_weight"]["metrics"]["mae_purchases"] == pytest.approx(mae, rel=1e-12)
    rolling = pd.read_csv(folder / "rolling.csv")
    assert (rolling["candidate"] == "equal-weight average").sum() == 3
    assert (rolling["candidate"] == "backtest-weighted average").sum() == 2


def test_a_winning_combination_is_ranked_with_its_weights(monkeypatch, tmp_path):
    """The plumbing of a kept combination (the rule itself is tested above): a leaderboard row, its tracking
    curves the weighted sums of the fits', and its row in leaderboard.csv."""
    import clv.evaluate.job as job

    def always(name, combined, singles, criterion):
        return Verdict(name, True, criterion, tuple(combined), 0.0, "x", 1.0, "kept: forced by the test")

    monkeypatch.setattr(job, "verdict", always)
    config = load_config(
        CDNOW,
        ["evaluation.models=[bgnbd, pareto_nbd]", "evaluation.rolling=2", f"output.reports_dir={tmp_path}"],
    )
    ev = evaluate(config)
    board = ev.leaderboard.set_index("candidate")
    assert {"equal-weight average", "backtest-weighted average"} <= set(board.index)
    row = board.loc["equal-weight average"]
    assert row["purchase"] == "combination" and row["weights"] == "bgnbd (mle) 0.500; pareto_nbd (mle) 0.500"
    fits = board.loc[["bgnbd (mle)", "pareto_nbd (mle)"], "predicted_purchases"]
    assert row["predicted_purchases"] == pytest.approx(fits.mean(), rel=1e-12)
    assert ev.tracking is not None
    np.testing.assert_allclose(
        ev.tracking.conditional["equal_weight"],
        (ev.tracking.conditional["bgnbd_mle"] + ev.tracking.conditional["pareto_nbd_mle"]) / 2,
        rtol=1e-12,
    )
    folder = write_evaluation(ev)
    csv = pd.read_csv(folder / "leaderboard.csv")
    assert sorted(csv["rank"]) == [1, 2, 3, 4] and (csv["purchase"] == "combination").sum() == 2


def test_without_rolling_origins_the_combinations_say_they_need_them():
    ev = evaluate(load_config(CDNOW, ["evaluation.models=[bgnbd, pareto_nbd]"]))
    assert ev.combinations.notes == (NEEDS_ORIGINS,) and not ev.combinations.forecasts
    assert len(ev.leaderboard) == 2
