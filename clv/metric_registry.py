"""The metrics of `clv evaluate`, in one table: each one's name, whether higher is better (and so whether the
leaderboard can be ranked by it), whether it needs amounts, its definition and how the CLI shows it.

The config's rank criteria, the leaderboard's columns, the rolling origin's metrics, the report's definitions and
the CLI's tables are all read from `METRICS` (as scikit-learn's scorer registry feeds its scorer names). Plain
Python only: the config imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["AMOUNT_CRITERIA", "METRICS", "RANK_CRITERIA", "Metric", "RankCriterion"]


@dataclass(frozen=True)
class Metric:
    """One metric of a fit on the holdout (or of its calibration fit).

    `higher_is_better` is None for a column the leaderboard is not ranked by; `leaderboard` False for a
    criterion that is a column only when ranked by (the absolute % errors); `definition` None for a column the
    report does not define; `label` None for a row the CLI's leaderboard does not show, and `digits` its
    decimals; `stability` for the metrics whose spread over the rolling origins is reported; `rolling_title`
    for the few the CLI's rolling table and the report's rolling chart show, titled so in the chart.
    """

    name: str
    higher_is_better: bool | None = None
    needs_amounts: bool = False
    leaderboard: bool = True
    definition: str | None = None
    label: str | None = None
    digits: int = 3
    stability: bool = False
    rolling_title: str | None = None

    @property
    def rankable(self) -> bool:
        """Whether the leaderboard can be ranked by this metric."""
        return self.higher_is_better is not None


#: in the leaderboard's column order
METRICS: tuple[Metric, ...] = (
    Metric(
        "log_likelihood",
        definition="log-likelihood of the purchase model's calibration fit (a posterior: at its mean)",
        label="log-likelihood (calibration)",
        digits=1,
    ),
    Metric("aic", False, definition="2k - 2 LL (Akaike 1974), k parameters; lower is better"),
    Metric(
        "bic", False, definition="k ln(n) - 2 LL (Schwarz 1978), n customers; lower is better", label="BIC", digits=1
    ),
    Metric("predicted_purchases", label="holdout purchases, predicted", digits=1),
    Metric("actual_purchases", label="holdout purchases, actual", digits=0),
    Metric(
        "percent_error_purchases",
        definition="100 (predicted - actual) / actual total holdout repeat purchases",
        label="  % error",
        digits=1,
        stability=True,
        rolling_title="% error of total purchases",
    ),
    Metric("abs_percent_error_purchases", False, leaderboard=False),
    Metric(
        "mae_purchases",
        False,
        definition="mean absolute error of holdout purchases per customer",
        label="MAE per customer",
        stability=True,
        rolling_title="MAE of purchases per customer",
    ),
    Metric(
        "rmse_purchases",
        False,
        definition="root mean squared error of holdout purchases per customer",
        label="RMSE per customer",
        stability=True,
    ),
    Metric("predicted_revenue", needs_amounts=True),
    Metric("actual_revenue", needs_amounts=True),
    Metric(
        "percent_error_revenue",
        needs_amounts=True,
        definition="100 (predicted - actual) / actual total holdout revenue",
        label="holdout revenue, % error",
        digits=1,
        stability=True,
    ),
    Metric("abs_percent_error_revenue", False, needs_amounts=True, leaderboard=False),
    Metric(
        "mae_revenue",
        False,
        needs_amounts=True,
        definition="mean absolute error of holdout revenue per customer",
        stability=True,
    ),
    Metric("rmse_revenue", False, needs_amounts=True),
    Metric(
        "spearman_value",
        True,
        definition="Spearman rank correlation of predicted CLV and the actual holdout value",
        label="Spearman (CLV vs holdout)",
        stability=True,
    ),
    Metric(
        "gini_value",
        True,
        definition="normalized Gini of predicted CLV against the actual holdout value (1 perfect ranking, 0 random)",
        label="normalized Gini (CLV)",
        stability=True,
        rolling_title="normalized Gini of CLV",
    ),
    Metric(
        "brier_p_alive",
        False,
        definition="mean squared difference of P(alive) and 'bought in the holdout' (0/1)",
        label="Brier P(alive)",
        stability=True,
    ),
    Metric(
        "auc_p_alive",
        True,
        definition="P(a random holdout buyer has a higher P(alive) than a random non-buyer), ties half",
        label="AUC P(alive)",
        stability=True,
    ),
    Metric("brier_p_purchase", False, definition="Brier score of P(at least one purchase in the holdout)"),
    Metric("auc_p_purchase", True, definition="AUC of P(at least one purchase in the holdout)"),
    Metric(
        "top_tier_share",
        True,
        definition="share of the actual holdout value that the top tier (by predicted CLV) made",
        label="top tier's share of holdout",
        stability=True,
        rolling_title="top tier's share of the holdout",
    ),
    Metric("top_tier_lift", definition="top tier's share of the holdout value over its share of customers"),
    Metric(
        "coverage_purchases",
        definition="share of customers whose holdout purchases fall in their predictive interval",
        label="interval coverage",
    ),
    Metric(
        "coverage_revenue",
        needs_amounts=True,
        definition="share of customers whose holdout revenue falls in their predictive interval",
    ),
)


#: the leaderboard's criteria, each with True when higher is better
RANK_CRITERIA: dict[str, bool] = {m.name: m.higher_is_better for m in METRICS if m.higher_is_better is not None}

#: the criteria that need amounts (revenue)
AMOUNT_CRITERIA: tuple[str, ...] = tuple(m.name for m in METRICS if m.rankable and m.needs_amounts)

#: the config's `evaluation.rank_by`: the names of RANK_CRITERIA (written out for the type checker; a test ties
#: the two), in the order a bad value's error lists them
RankCriterion = Literal[
    "mae_purchases",
    "rmse_purchases",
    "abs_percent_error_purchases",
    "mae_revenue",
    "rmse_revenue",
    "abs_percent_error_revenue",
    "spearman_value",
    "gini_value",
    "brier_p_alive",
    "auc_p_alive",
    "brier_p_purchase",
    "auc_p_purchase",
    "top_tier_share",
    "aic",
    "bic",
]
