"""MBG/NBD: Batislam, Denizel & Filiztekin (2007), "Empirical validation and comparison of models for customer
base analysis", International Journal of Research in Marketing 24(3), 201-209. The formulas live in
`clv.purchase.beta_geometric` with one extra drop-out chance (c = 1)."""

from __future__ import annotations

from typing import ClassVar

from clv.purchase.bgnbd import BetaGeoModel

__all__ = ["ModifiedBetaGeoModel"]


class ModifiedBetaGeoModel(BetaGeoModel):
    """MBG/NBD: BG/NBD in which a customer may also drop out right after the first purchase, so that customers
    with no repeat purchase are not certainly alive. Parameters r, alpha (in the run's time unit), a, b.

    Example:
        >>> from clv import ModifiedBetaGeoModel
        >>> import pandas as pd
        >>> rfm = pd.DataFrame({"frequency": [0], "recency": [0.0], "T": [38.86]})
        >>> model = ModifiedBetaGeoModel.from_params(r=0.525, alpha=6.183, a=0.891, b=1.614)
        >>> round(float(model.probability_alive(rfm)[0]), 4)
        0.3897
    """

    name: ClassVar[str] = "mbgnbd"
    _c: ClassVar[int] = 1
