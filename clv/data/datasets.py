"""Data sets shipped inside the package, so that the demo and the tests need no download.

- `cdnow`: the 1/10 CDNOW cohort of Fader, Hardie & Lee (2005): 2,357 customers who first bought in Q1 1997,
  6,919 transactions to 1998-06-30 (same-day transactions not merged). `customer_id` is the cohort id (1..2357)
  that BTYD's `cdnowSummary` uses; `master_id` is the id in the full file.
- `cdnow_master`: all 23,570 customers of that quarter, 69,659 transactions.
- `donations`: the BG/BB donations data of Fader, Hardie & Shang (2010), as (frequency, recency, periods,
  weights) rows for 11,104 donors.

The files come from the data folder of the `lifetimes` package (MIT), which took them from Bruce Hardie's site.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd

from clv.errors import UsageError

__all__ = ["EMBEDDED_DATASETS", "dataset_path", "load_donations"]

#: Embedded transaction data sets, by the name a config's `data.source` may use.
EMBEDDED_DATASETS: dict[str, str] = {
    "cdnow": "cdnow.csv.gz",
    "cdnow_master": "cdnow_master.csv.gz",
}


def dataset_path(name: str) -> Path:
    """The file of an embedded transaction data set (columns customer_id, date, cds, amount)."""
    try:
        filename = EMBEDDED_DATASETS[name]
    except KeyError:
        known = ", ".join(sorted(EMBEDDED_DATASETS))
        raise UsageError(f"no embedded data set {name!r}; embedded: {known}") from None
    return Path(str(resources.files("clv.data").joinpath("files", filename)))


def load_donations() -> pd.DataFrame:
    """The donations data of Fader, Hardie & Shang (2010) for BG/BB: frequency, recency, periods, weights."""
    path = Path(str(resources.files("clv.data").joinpath("files", "donations.csv")))
    return pd.read_csv(path)
