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

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from clv.errors import first_ids

__all__ = ["SpendOutliers", "find_spend_outliers", "spend_fit_frame", "spend_value_frame"]

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


def _outlier_mask(rfm: pd.DataFrame, multiple: float) -> tuple[np.ndarray, float, float]:
    x = rfm["frequency"].to_numpy(dtype=float)
    m = rfm["monetary_value"].to_numpy(dtype=float)
    buyers = (x > 0) & (m > 0)
    median = float(np.median(m[buyers])) if buyers.any() else 0.0
    threshold = multiple * median
    return buyers & (m > threshold), median, threshold


def find_spend_outliers(rfm: pd.DataFrame, policy: OutlierPolicy, multiple: float) -> SpendOutliers:
    """The repeat buyers whose mean spend exceeds `multiple` x the median (see the module docstring)."""
    mask, median, threshold = _outlier_mask(rfm, multiple)
    x = rfm["frequency"].to_numpy(dtype=float)
    m = rfm["monetary_value"].to_numpy(dtype=float)
    revenue = x * m
    total = float(revenue.sum())
    ids = rfm["customer_id"].to_numpy()[mask] if "customer_id" in rfm else np.flatnonzero(mask)
    order = np.argsort(-m[mask], kind="stable")
    return SpendOutliers(
        policy=policy,
        multiple=multiple,
        median_spend=median,
        threshold=threshold,
        customers=int(mask.sum()),
        repeat_buyers=int(((x > 0) & (m > 0)).sum()),
        share_of_revenue=float(revenue[mask].sum() / total) if total > 0 else 0.0,
        largest_spend=float(m[mask].max()) if mask.any() else 0.0,
        first_ids=first_ids(ids[order]) if mask.any() else "",
    )


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
