"""Buyers whose mean spend is far above the rest (wholesale buyers in retail data), and the checks of the
Gamma-Gamma assumptions on the data a spend model is fitted to.

A repeat buyer is a spend outlier when the mean value of their repeat purchases exceeds `multiple` times the
median of that mean over all repeat buyers with a mean above 0. The policy says what the spend model does with
them (`model.spend_outliers`):
- `keep`: nothing; they are reported.
- `exclude`: left out of the Gamma-Gamma fit; their own expected spend is still predicted from their history
  (Fader & Hardie 2013, Eq. 6, which weighs their mean against the population's).
- `cap`: their mean spend is set to the threshold, in the fit and in the predictions: a conservative value for
  accounts whose size the model's gamma tails would not reproduce.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from clv.errors import first_ids

__all__ = ["SpendOutliers", "find_spend_outliers", "spend_fit_frame", "spend_fit_rows", "spend_value_frame"]

#: the outliers' ids named in the sentence
FIRST_SHOWN = 5

OutlierPolicy = Literal["keep", "cap", "exclude"]


@dataclass(frozen=True)
class SpendOutliers:
    """The spend outliers of one RFM summary and what the spend model does with them (money in the data's unit)."""

    policy: OutlierPolicy
    multiple: float
    median_spend: float
    threshold: float
    customers: int
    repeat_buyers: int
    #: their share of the calibration period's repeat-purchase revenue (frequency x monetary_value)
    share_of_revenue: float
    largest_spend: float
    first_ids: str

    @property
    def share_of_buyers(self) -> float:
        return self.customers / self.repeat_buyers if self.repeat_buyers else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"share_of_buyers": self.share_of_buyers}

    def sentence(self, currency: str | None = None) -> str:
        """One line for the CLI and the report; amounts in `currency` when it is known."""
        unit = f" {currency}" if currency else ""
        if not self.customers:
            return (
                f"no repeat buyer spends more than {self.multiple:g}x the median mean spend "
                f"({self.median_spend:,.2f}{unit} per purchase)"
            )
        action = {
            "keep": "kept in the spend model (model.spend_outliers: keep)",
            "exclude": "left out of the spend model's fit (model.spend_outliers: exclude)",
            "cap": f"capped at {self.threshold:,.2f}{unit} per purchase for the spend model "
            "(model.spend_outliers: cap)",
        }[self.policy]
        return (
            f"{self.customers:,} repeat buyer(s) ({self.share_of_buyers:.1%}) spend more than {self.multiple:g}x the "
            f"median mean spend of {self.median_spend:,.2f}{unit} per purchase (up to {self.largest_spend:,.2f}; "
            f"first ids: "
            f"{self.first_ids}) and carry {self.share_of_revenue:.1%} of the calibration's repeat-purchase revenue; "
            f"{action}"
        )


def _outlier_mask(
    rfm: pd.DataFrame, multiple: float, weights: np.ndarray | None = None
) -> tuple[np.ndarray, float, float]:
    x = rfm["frequency"].to_numpy(dtype=float)
    m = rfm["monetary_value"].to_numpy(dtype=float)
    buyers = (x > 0) & (m > 0)
    if weights is None:
        median = float(np.median(m[buyers])) if buyers.any() else 0.0
    else:
        median = _weighted_median(m[buyers], weights[buyers]) if buyers.any() else 0.0
    threshold = multiple * median
    return buyers & (m > threshold), median, threshold


def _weighted_median(values: np.ndarray, counts: np.ndarray) -> float:
    """np.median of the values each repeated `counts` times (whole numbers), without repeating them: the middle
    value, or the mean of the two middle ones."""
    order = np.argsort(values, kind="stable")
    sorted_values, cumulative = values[order], np.cumsum(counts[order])
    n = round(float(cumulative[-1]))

    def at(rank: int) -> float:  # the value of 0-based rank `rank` in the repeated, sorted values
        return float(sorted_values[np.searchsorted(cumulative, rank, side="right")])

    return at(n // 2) if n % 2 else float(np.mean([at(n // 2 - 1), at(n // 2)]))


def find_spend_outliers(
    rfm: pd.DataFrame,
    policy: OutlierPolicy,
    multiple: float,
    weights: np.ndarray | None = None,
    outlier_ids: Callable[[float, int], list[str]] | None = None,
) -> SpendOutliers:
    """The repeat buyers whose mean spend exceeds `multiple` x the median (see the module docstring). With
    `weights`, each row stands for that many buyers (distinct (frequency, monetary_value) pairs), and
    `outlier_ids(threshold, n)` gives the first n outliers' ids, highest spend first (ties by id)."""
    mask, median, threshold = _outlier_mask(rfm, multiple, weights)
    x = rfm["frequency"].to_numpy(dtype=float)
    m = rfm["monetary_value"].to_numpy(dtype=float)
    w = np.ones(x.size) if weights is None else np.asarray(weights, dtype=float)
    revenue = x * m if weights is None else x * m * w
    total = float(revenue.sum())
    customers = int(mask.sum()) if weights is None else round(float(w[mask].sum()))
    if outlier_ids is not None:
        shown = first_ids(outlier_ids(threshold, FIRST_SHOWN + 1)) if customers else ""
    else:
        ids = rfm["customer_id"].to_numpy()[mask] if "customer_id" in rfm else np.flatnonzero(mask)
        shown = first_ids(ids[np.argsort(-m[mask], kind="stable")], FIRST_SHOWN) if mask.any() else ""
    buyers = (x > 0) & (m > 0)
    return SpendOutliers(
        policy=policy,
        multiple=multiple,
        median_spend=median,
        threshold=threshold,
        customers=customers,
        repeat_buyers=int(buyers.sum()) if weights is None else round(float(w[buyers].sum())),
        share_of_revenue=float(revenue[mask].sum() / total) if total > 0 else 0.0,
        largest_spend=float(m[mask].max()) if mask.any() else 0.0,
        first_ids=shown,
    )


def spend_fit_rows(rfm: pd.DataFrame, outliers: SpendOutliers, weights: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """`spend_fit_frame` of rows that stand for `weights` buyers each, with the kept rows' weights."""
    if outliers.policy == "exclude" and outliers.customers:
        m = rfm["monetary_value"].to_numpy(dtype=float)
        keep = ~((rfm["frequency"].to_numpy(dtype=float) > 0) & (m > outliers.threshold))
        return rfm[keep].reset_index(drop=True), weights[keep]
    return spend_fit_frame(rfm, outliers), weights


def spend_fit_frame(rfm: pd.DataFrame, outliers: SpendOutliers) -> pd.DataFrame:
    """The RFM rows the spend model is fitted to under the outlier policy (a new frame; `rfm` is not changed)."""
    if outliers.policy == "keep" or not outliers.customers:
        return rfm
    m = rfm["monetary_value"].to_numpy(dtype=float)
    mask = (rfm["frequency"].to_numpy(dtype=float) > 0) & (m > outliers.threshold)  # above it: buyers, m > 0
    if outliers.policy == "exclude":
        return rfm[~mask].reset_index(drop=True)
    return spend_value_frame(rfm, outliers)


def spend_value_frame(rfm: pd.DataFrame, outliers: SpendOutliers) -> pd.DataFrame:
    """The RFM rows whose spend is predicted: under `cap` the outliers' mean spend is the threshold."""
    if outliers.policy != "cap" or not outliers.customers:
        return rfm
    capped = rfm.copy()
    capped["monetary_value"] = np.minimum(capped["monetary_value"].to_numpy(dtype=float), outliers.threshold)
    return capped
