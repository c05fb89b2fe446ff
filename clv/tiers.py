"""Value tiers, churn-risk segments, RFM scores and tier migration.

Tiers rank customers by CLV: by shares of customers (the default: top 5% / next 15% / next 30% / rest), or by
CLV thresholds (in the CLV's unit: currency, or discounted purchases for data without amounts). With a posterior,
each customer's probability of each tier is the share of draws in which the customer's CLV falls in the tier's
range, where each draw's ranges come from that draw's CLV of all customers (for share tiers) or from the fixed
thresholds.

Segments cross value with churn risk, and churn risk is P(at least one purchase in the churn window), the next
13 weeks by default: `1 - probability_of_purchases(rfm, 0, window)`. It predicts who buys again on the holdout
(AUC 0.77 on CDNOW, 0.87 on the grocery data), where P(alive) does not (0.32 and 0.41: under BG/NBD every
one-time buyer has P(alive) = 1). The high-value customers unlikely to buy in the window are the ones slipping
away. RFM scores are the usual 1-5 quintile scores of the calibration history: a separate, descriptive view.
"""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from clv.config import TiersConfig
from clv.draw_store import DrawStore
from clv.errors import DataError
from clv.units import Duration, TimeUnit

__all__ = [
    "AT_RISK",
    "RFM_SEGMENTS",
    "SEGMENTS",
    "UNIDENTIFIED_SEGMENTS",
    "assign_tiers",
    "at_risk",
    "check_tier_sizes",
    "churn_column",
    "churn_window",
    "migration_from_counts",
    "migration_table",
    "rfm_scores",
    "segments",
    "share_boundaries",
    "share_cut_positions",
    "tier_cut_offs",
    "tier_probabilities",
    "tier_shares",
    "tier_table",
]

FloatArray = NDArray[np.float64]

#: the churn-risk x value segments, in the order reports list them; "active" is P(purchase in the churn window)
#: at or above tiers.at_risk_p_purchase, "slipping away" / "lapsing" below it
SEGMENTS = ("high value, active", "high value, slipping away", "other, active", "other, lapsing")
#: the segment marketing acts on first
AT_RISK = SEGMENTS[1]
#: the value segments when the purchase model cannot identify churn risk (its dropout is not identified): value
#: alone, said plainly, instead of an "active" that P(alive) = 1 would claim for everyone
UNIDENTIFIED_SEGMENTS = ("high value, churn risk not identified", "other, churn risk not identified")


def at_risk(customers: pd.DataFrame) -> pd.DataFrame:
    """The customer table's rows in the `AT_RISK` segment (high value, unlikely to buy in the churn window)."""
    return customers[customers["segment"] == AT_RISK]


def churn_window(config: TiersConfig, unit: TimeUnit) -> float:
    """The churn window (tiers.churn_window, default 13 weeks) in time units: 13 in a run in weeks, 91 in days."""
    return Duration.parse(config.churn_window).units(dt.date(2000, 1, 1), unit)  # D or W: no calendar


def churn_column(window: float, unit: TimeUnit) -> str:
    """The name of the churn-risk column, with its window: `p_purchase_next_13w`, `p_purchase_next_91d`."""
    return f"p_purchase_next_{window:g}{unit.lower()}".replace(".", "_")


def share_boundaries(n: int, config: TiersConfig) -> NDArray[np.intp]:
    """Positions (in CLV order, highest first) where each tier ends, rounding cumulative shares."""
    shares = np.array([level.share or 0.0 for level in config.levels])
    ends = np.rint(np.cumsum(shares) * n).astype(np.intp)
    ends[-1] = n
    return ends


def assign_tiers(clv: FloatArray, config: TiersConfig, ids: NDArray[np.generic] | None = None) -> NDArray[np.intp]:
    """Tier index (0 = the highest tier) of each customer. Share tiers: customers sorted by CLV (ties by their
    order in `ids`), cut at the rounded cumulative shares. Threshold tiers: the first tier whose min_clv the CLV
    reaches. Raises DataError when a tier holds fewer than `min_size` customers."""
    n = clv.size
    labels = [level.label for level in config.levels]
    if config.levels[0].share is not None:
        keys = (np.arange(n) if ids is None else ids, -clv)
        order = np.lexsort(keys)
        tier = np.empty(n, dtype=np.intp)
        tier[order] = np.searchsorted(share_boundaries(n, config), np.arange(n), side="right")
    else:
        thresholds = np.array([level.min_clv for level in config.levels[:-1]], dtype=float)
        tier = np.searchsorted(-thresholds, -clv, side="left").astype(np.intp)  # thresholds above the CLV
    check_tier_sizes(np.bincount(tier, minlength=len(labels)).tolist(), config)
    return tier


def check_tier_sizes(sizes: list[int], config: TiersConfig) -> None:
    """Raises DataError when a tier holds fewer than `min_size` customers (`sizes`: per tier, highest first)."""
    labels = [level.label for level in config.levels]
    small = [f"{labels[k]} ({sizes[k]})" for k in range(len(labels)) if sizes[k] < config.min_size]
    if small:
        raise DataError(
            f"{len(small)} tier(s) hold fewer than tiers.min_size={config.min_size} customers: {', '.join(small)}",
            hint="widen the tiers' shares or thresholds, or use fewer tiers"
            + (", or lower tiers.min_size" if config.min_size > 1 else " (tiers.levels)"),
        )


def tier_table(customers: pd.DataFrame, config: TiersConfig, churn: str | None = None) -> pd.DataFrame:
    """Per tier: customers and their share, total CLV and its share, CLV range, mean P(alive), the mean of the
    churn-risk column `churn` (e.g. p_purchase_next_13w) when given, expected purchases, mean spend."""
    labels = [level.label for level in config.levels]
    grouped = customers.groupby("tier", observed=False, sort=False)
    total_clv = float(customers["clv"].sum())
    rows = []
    for label in labels:
        part = customers[customers["tier"] == label]
        row = {
            "tier": label,
            "customers": len(part),
            "share_of_customers": len(part) / len(customers) if len(customers) else 0.0,
            "total_clv": float(part["clv"].sum()),
            "share_of_clv": float(part["clv"].sum()) / total_clv if total_clv else 0.0,
            "min_clv": float(part["clv"].min()) if len(part) else float("nan"),
            "max_clv": float(part["clv"].max()) if len(part) else float("nan"),
            "mean_p_alive": float(part["p_alive"].mean()) if len(part) else float("nan"),
            **({f"mean_{churn}": float(part[churn].mean()) if len(part) else float("nan")} if churn else {}),
            "expected_purchases": float(part["expected_purchases"].sum()),
        }
        if "expected_spend" in part:
            row["mean_expected_spend"] = float(part["expected_spend"].mean()) if len(part) else float("nan")
        rows.append(row)
    del grouped
    return pd.DataFrame(rows)


def segments(
    tier: NDArray[np.intp], p_purchase: FloatArray, config: TiersConfig, churn_identified: bool = True
) -> NDArray[np.object_]:
    """The churn-risk x value segment of each customer (see SEGMENTS) from P(at least one purchase in the churn
    window); with `churn_identified` False, the value segment only (see UNIDENTIFIED_SEGMENTS): without dropout
    the purchase probability ignores recency, so a low one marks a slow buyer, not one slipping away."""
    high = tier < config.high_value_tiers
    if not churn_identified:
        return np.asarray(UNIDENTIFIED_SEGMENTS, dtype=object)[np.where(high, 0, 1)]
    alive = p_purchase >= config.at_risk_p_purchase
    index = np.where(high, np.where(alive, 0, 1), np.where(alive, 2, 3))
    return np.asarray(SEGMENTS, dtype=object)[index]


#: named RFM segments by recency and frequency score (the widely used 11-segment map)
RFM_SEGMENTS: tuple[tuple[str, str, str], ...] = (
    ("12", "12", "hibernating"),
    ("12", "34", "at risk"),
    ("12", "5", "can't lose them"),
    ("3", "12", "about to sleep"),
    ("3", "3", "need attention"),
    ("34", "45", "loyal customers"),
    ("4", "1", "promising"),
    ("5", "1", "new customers"),
    ("45", "23", "potential loyalists"),
    ("5", "45", "champions"),
)


def _quintile_score(values: FloatArray) -> NDArray[np.intp]:
    """1-5 by quintile of the values (ties share a score): 5 for the highest fifth."""
    if values.size == 0:
        return np.zeros(0, dtype=np.intp)
    pct = pd.Series(values).rank(method="average", pct=True).to_numpy()
    return np.clip(np.ceil(pct * 5.0), 1, 5).astype(np.intp)


def rfm_scores(rfm: pd.DataFrame) -> pd.DataFrame:
    """R, F and M scores 1-5 (R from the time since the last purchase, T - recency: the most recent fifth get 5;
    F from frequency; M from mean spend), the rfm_score, and the named segment (by R and F). Data without amounts
    has no M: no m_score column, and the rfm_score has two digits (R, F), so nothing claims a spend it lacks."""
    r = _quintile_score(-(rfm["T"].to_numpy(dtype=float) - rfm["recency"].to_numpy(dtype=float)))
    f = _quintile_score(rfm["frequency"].to_numpy(dtype=float))
    names = np.full(len(rfm), "other", dtype=object)
    for r_set, f_set, name in RFM_SEGMENTS:
        hit = np.isin(r, [int(c) for c in r_set]) & np.isin(f, [int(c) for c in f_set])
        names[hit] = name
    columns: dict[str, object] = {"r_score": r, "f_score": f}
    digits = [r, f]
    if "monetary_value" in rfm:
        columns["m_score"] = m = _quintile_score(rfm["monetary_value"].to_numpy(dtype=float))
        digits.append(m)
    columns["rfm_score"] = ["".join(map(str, scores)) for scores in zip(*digits, strict=True)]
    columns["rfm_segment"] = names
    return pd.DataFrame(columns, index=rfm.index)


def tier_probabilities(
    clv_draws: DrawStore | NDArray[np.floating],
    clv_index: NDArray[np.intp],
    config: TiersConfig,
    block: int = 50_000,
    workers: int = 2,
) -> FloatArray:
    """P(tier k) per customer from CLV draws of value rows (customer i is row clv_index[i]), shape
    (customers, tiers). Share tiers: in each draw, the tier cut-offs are that draw's CLV order statistics over all
    customers; threshold tiers: the configured thresholds."""
    if not isinstance(clv_draws, DrawStore):
        clv_draws = DrawStore.of(clv_draws)
    n_tiers = len(config.levels)
    draws = clv_draws.shape[1]
    cut = tier_cut_offs(config, draws)
    if cut is None:
        # draws per partition step: 8M float32 values (32 MB) at a time, each step one pass over the stored draws
        cut = _share_cut_offs(clv_draws, clv_index, config, max(1, 160 * block // max(clv_index.size, 1)), workers)
    rows = clv_draws.shape[0]
    out = np.zeros((rows, n_tiers))
    # rows per step: (rows x tiers x draws) booleans bounded (50M at the default block), and few reads of a store
    step = max(1, (block * 1024) // max(draws * n_tiers, 1))
    for r0 in range(0, rows, step):
        out[r0 : r0 + step] = tier_shares(clv_draws.read_rows(r0, min(r0 + step, rows)), cut)
    return out[clv_index]


def tier_cut_offs(config: TiersConfig, draws: int) -> FloatArray | None:
    """Threshold tiers' cut-offs per draw (tiers - 1, draws): the configured thresholds; None for share tiers,
    whose cut-offs are each draw's order statistics (`share_cut_positions`)."""
    if config.levels[0].share is not None:
        return None
    thresholds = np.array([level.min_clv for level in config.levels[:-1]], dtype=float)
    return np.repeat(thresholds[:, None], draws, axis=1)


def share_cut_positions(n: int, config: TiersConfig) -> NDArray[np.intp]:
    """The 0-based ranks, in ascending CLV over n customers, of each share tier's least CLV but the last's: a
    draw's cut-offs are its CLVs at these ranks."""
    return np.clip(n - share_boundaries(n, config)[:-1], 0, max(n - 1, 0))


def tier_shares(values: NDArray[np.floating], cut: FloatArray) -> FloatArray:
    """P(tier k) of rows of CLV draws `values` (rows, draws) given each draw's cut-offs `cut` (tiers - 1, draws),
    shape (rows, tiers): a customer is in the first tier whose cut-off its CLV reaches."""
    values = np.asarray(values, dtype=float)
    n_tiers = cut.shape[0] + 1
    tier = (n_tiers - 1) - (values[:, None, :] >= cut[None, :, :]).sum(axis=1)
    return np.stack([(tier == k).mean(axis=1) for k in range(n_tiers)], axis=1)


def _share_cut_offs(
    clv_draws: DrawStore, clv_index: NDArray[np.intp], config: TiersConfig, step: int, workers: int
) -> FloatArray:
    """Per draw (columns), the least CLV inside each share tier but the last: order statistics of the draw's CLV
    over all customers, found for `step` draws at a time by one partition along the customers."""
    draws = clv_draws.shape[1]
    positions = share_cut_positions(clv_index.size, config)
    cut = np.empty((positions.size, draws))

    def cut_offs(d0: int) -> None:
        # each draw's customers contiguous (a partition along strided columns is several times slower), in the
        # draws' own float32: the order statistics are the same numbers
        columns = clv_draws.read_draws(d0, min(d0 + step, draws))[:, clv_index]
        cut[:, d0 : d0 + step] = np.partition(columns, positions, axis=1)[:, positions].T

    with ThreadPoolExecutor(max_workers=workers) as pool:  # partitions release the GIL
        list(pool.map(cut_offs, range(0, draws, step)))
    return cut


def migration_table(previous: pd.DataFrame, current: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """Customers by previous tier (rows) and current tier (columns), with customers new since the last run and
    those no longer present. Both frames have customer_id and tier."""
    # ids are text (as written); a run saved before that stored whole numbers: compare them as their text
    before_ids, now_ids = (frame[["customer_id", "tier"]].astype({"customer_id": str}) for frame in (previous, current))
    merged = before_ids.merge(now_ids, on="customer_id", how="outer", suffixes=("_previous", "_current"))
    moves = pd.DataFrame({"before": merged["tier_previous"].fillna(NEW), "after": merged["tier_current"].fillna(GONE)})
    counts = moves.value_counts().rename("customers").reset_index()
    return migration_from_counts(counts, labels)


#: the migration table's row of customers without a previous tier, and its column of those without a current one
NEW, GONE = "(new)", "(gone)"


def migration_from_counts(counts: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """`migration_table` from the customers counted by move (columns before, after, customers; `NEW` before
    for customers new since the last run, `GONE` after for those no longer present): on Spark, the counts of a
    join there."""
    rows, columns = [*labels, NEW], [*labels, GONE]
    table = pd.crosstab(
        pd.Categorical(counts["before"], rows),
        pd.Categorical(counts["after"], columns),
        values=counts["customers"].to_numpy(dtype=np.int64),
        aggfunc="sum",
        dropna=False,
    )
    table = table.fillna(0).astype(np.int64)
    table.index.name = "previous tier"
    table.columns.name = "current tier"
    return table
