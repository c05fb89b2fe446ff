"""clv: customer-lifetime-value engine.

Transactions -> validated RFM summary -> purchase model (BG/NBD family) + spend model (Gamma-Gamma) ->
P(alive), expected purchases, expected spend, discounted CLV.

The names below load on first use (PEP 562), so that `import clv` costs nothing until a name is used: the command
line starts at once, and a Ctrl-C while it starts is handled like any other.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clv.config import RunConfig, load_config
    from clv.data import load_transactions, rfm_summary
    from clv.errors import (
        ClvError,
        ClvWarning,
        ConfigError,
        ConvergenceWarning,
        DataError,
        FitError,
        ModelFileError,
        NotFittedError,
    )
    from clv.purchase import (
        BetaGeoBetaBinomModel,
        BetaGeoCNBDModel,
        BetaGeoModel,
        ModifiedBetaGeoCNBDModel,
        ModifiedBetaGeoModel,
        ParetoGGGModel,
        ParetoNBDModel,
        PurchaseModel,
    )
    from clv.spend import GammaGammaModel
    from clv.value import value_customers

__version__ = "0.1.0"

#: each public name and the module that defines it
_WHERE: dict[str, str] = {
    "RunConfig": "clv.config",
    "load_config": "clv.config",
    "load_transactions": "clv.data",
    "rfm_summary": "clv.data",
    "ClvError": "clv.errors",
    "ClvWarning": "clv.errors",
    "ConfigError": "clv.errors",
    "ConvergenceWarning": "clv.errors",
    "DataError": "clv.errors",
    "FitError": "clv.errors",
    "ModelFileError": "clv.errors",
    "NotFittedError": "clv.errors",
    "BetaGeoBetaBinomModel": "clv.purchase",
    "BetaGeoCNBDModel": "clv.purchase",
    "BetaGeoModel": "clv.purchase",
    "ModifiedBetaGeoCNBDModel": "clv.purchase",
    "ModifiedBetaGeoModel": "clv.purchase",
    "ParetoGGGModel": "clv.purchase",
    "ParetoNBDModel": "clv.purchase",
    "PurchaseModel": "clv.purchase",
    "GammaGammaModel": "clv.spend",
    "value_customers": "clv.value",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'clv' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "BetaGeoBetaBinomModel",
    "BetaGeoCNBDModel",
    "BetaGeoModel",
    "ClvError",
    "ClvWarning",
    "ConfigError",
    "ConvergenceWarning",
    "DataError",
    "FitError",
    "GammaGammaModel",
    "ModelFileError",
    "ModifiedBetaGeoCNBDModel",
    "ModifiedBetaGeoModel",
    "NotFittedError",
    "ParetoGGGModel",
    "ParetoNBDModel",
    "PurchaseModel",
    "RunConfig",
    "__version__",
    "load_config",
    "load_transactions",
    "rfm_summary",
    "value_customers",
]
