"""`model.purchase: auto`: the choice on CDNOW against an independent loop over the origins with `clv evaluate`'s
own code, the summary.json block, the report and headline, the tie rule, and the errors."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from clv.cli import app
from clv.config import load_config
from clv.errors import ConfigError, DataError
from clv.evaluate.choice import _decide, choose_purchase_model
from clv.evaluate.job import evaluate

ROOT = Path(__file__).resolve().parents[1]
CDNOW = ROOT / "configs" / "cdnow.yaml"
ORIGINS = ("1997-08-31", "1997-09-30")
MODELS = ("bgnbd", "pareto_nbd", "mbgnbd")


def _auto(*overrides: str):
    return load_config(CDNOW, ["model.purchase=auto", *overrides])


def _independent_means(config, origins: tuple[str, ...]) -> dict[str, list[float]]:
    """Each origin as its own `clv evaluate` run (calibration end = the origin, holdout of the same length),
    maximum likelihood, the leaderboard's mae_purchases per model."""
    length = config.time.holdout_end - config.time.calibration_end
    out: dict[str, list[float]] = {m: [] for m in MODELS}
    for origin in origins:
        end = dt.date.fromisoformat(origin)
        cfg = load_config(
            CDNOW,
            [
                f"time.calibration_end={end}",
                f"time.holdout_end={end + length}",
                "evaluation.methods=[mle]",
                f"evaluation.models=[{','.join(MODELS)}]",
            ],
        )
        board = evaluate(cfg).leaderboard
        for model in MODELS:
            out[model].append(float(board.loc[board["purchase"] == model, "mae_purchases"].iloc[0]))
    return out


def test_cdnow_auto_picks_the_lowest_mean_mae_of_an_independent_loop():
    config = _auto(f"evaluation.origins=[{','.join(ORIGINS)}]")
    choice = choose_purchase_model(config)
    expected = _independent_means(config, ORIGINS)
    means = {m: sum(v) / len(v) for m, v in expected.items()}
    assert choice.chosen == min(means, key=lambda m: means[m])
    assert [o.isoformat() for o in choice.origins] == list(ORIGINS)
    for model in MODELS:
        assert choice.scores[model] == pytest.approx(expected[model], rel=1e-9)
        assert choice.means[model] == pytest.approx(means[model], rel=1e-9)
    runner_up = sorted(means, key=lambda m: means[m])[1]
    assert choice.reason == (
        f"{choice.chosen}: lowest mean MAE over 2 origins, {means[choice.chosen]:.3f} vs {means[runner_up]:.3f} "
        f"{runner_up}"
    )


def _config_file(tmp_path: Path) -> Path:
    text = CDNOW.read_text().replace("reports_dir: reports", f"reports_dir: {tmp_path / 'reports'}")
    config = tmp_path / "run.yaml"
    config.write_text(text.replace("models_dir: models", f"models_dir: {tmp_path / 'models'}"))
    return config


def _saved_purchase(tmp_path: Path) -> str:
    (saved,) = (tmp_path / "models" / "cdnow").glob("2*/model.json")
    return json.loads(saved.read_text())["config"]["model"]["purchase"]


def test_run_with_auto_writes_the_choice_to_summary_report_and_headline(tmp_path):
    config = _config_file(tmp_path)
    result = CliRunner().invoke(app, ["run", str(config), "--set", "model.purchase=auto"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "reports" / "cdnow" / "summary.json").read_text())
    block = summary["model_choice"]
    assert block["chosen"] == summary["purchase_model"]["name"]
    assert block["criterion"] == "mae_purchases"
    assert len(block["origins"]) == 3  # the default: 3 origins a month apart, said in a note
    assert any("no rolling origins configured" in note for note in block["notes"])
    means = {c["purchase"]: c["mean"] for c in block["candidates"]}
    assert set(means) == set(MODELS)
    assert block["chosen"] == min(means, key=lambda m: means[m])
    for c in block["candidates"]:
        assert c["mean"] == pytest.approx(sum(c["per_origin"]) / 3, rel=1e-12)
    assert "purchase model chosen (auto)" in result.output
    html = (tmp_path / "reports" / "cdnow" / "report.html").read_text()
    assert "Purchase model chosen automatically" in html
    assert _saved_purchase(tmp_path) == block["chosen"]  # the saved model records what was fitted


def test_train_with_auto_saves_the_chosen_model(tmp_path):
    config = _config_file(tmp_path)
    overrides = ["--set", "model.purchase=auto", "--set", f"evaluation.origins=[{ORIGINS[1]}]"]
    result = CliRunner().invoke(app, ["train", str(config), *overrides])
    assert result.exit_code == 0, result.output
    assert "purchase model chosen (auto): pareto_nbd: lowest mean MAE over 1 origin," in result.output
    assert _saved_purchase(tmp_path) == "pareto_nbd"


def test_bayes_chooses_with_maximum_likelihood_fits_and_says_so():
    config = _auto("model.method=bayes", f"evaluation.origins=[{ORIGINS[1]}]")
    choice = choose_purchase_model(config)
    assert choice.to_dict()["method"] == "mle"
    assert any("maximum-likelihood" in note for note in choice.notes)


def test_ties_go_to_the_first_listed_and_higher_is_better_criteria():
    origins = (dt.date(2020, 1, 31), dt.date(2020, 2, 29))
    tied = _decide({"mbgnbd": (1.0, 2.0), "bgnbd": (2.0, 1.0)}, "mae_purchases", origins, [])
    assert tied.chosen == "mbgnbd"
    assert "practically tied" in tied.reason
    close = _decide({"pareto_nbd": (0.84170, 0.84170), "mbgnbd": (0.84174, 0.84174)}, "mae_purchases", origins, [])
    assert "0.84170 vs 0.84174 mbgnbd" in close.reason  # digits enough to tell them apart
    gini = _decide({"bgnbd": (0.5, 0.6), "pareto_nbd": (0.7, 0.6)}, "gini_value", origins, [])
    assert gini.chosen == "pareto_nbd"
    assert gini.reason.startswith("pareto_nbd: highest mean")
    lacking = _decide({"bgnbd": (math.nan, 0.6), "pareto_nbd": (0.9, 0.9)}, "mae_purchases", origins, [])
    assert lacking.chosen == "pareto_nbd"
    assert lacking.to_dict()["candidates"][0] == {"purchase": "bgnbd", "per_origin": [None, 0.6], "mean": None}


def test_too_short_data_is_a_clear_error(tmp_path):
    days = pd.date_range("2024-01-01", "2024-03-31", freq="3D")
    rows = [{"customer_id": f"c{i % 7}", "date": d.date().isoformat(), "amount": 10.0} for i, d in enumerate(days)]
    source = tmp_path / "short.csv"
    pd.DataFrame(rows).to_csv(source, index=False)
    config = load_config(
        CDNOW,
        [
            f"data.source={source}",
            "data.duplicates=keep",
            "time.unit=D",
            "time.calibration_end=2024-02-15",
            "time.holdout_end=2024-03-31",
            "prediction.horizon=1M",
            "model.purchase=auto",
        ],
    )
    with pytest.raises(DataError, match=r"too short for the rolling origins 2023-12-15.*bought by it"):
        choose_purchase_model(config)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["evaluation.models=[bgnbd]"], "lists 1 model"),
        (["evaluation.models=[bgnbd,nosuch]"], "evaluation.models"),
        (["evaluation.models=[auto,bgnbd]"], "evaluation.models"),
        (["time.holdout_end=null"], "needs time.holdout_end"),
    ],
)
def test_bad_candidate_lists_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        _auto(*overrides)
