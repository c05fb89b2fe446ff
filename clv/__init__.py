"""clv: customer-lifetime-value engine.

Transactions -> validated RFM summary -> purchase model (BG/NBD family) + spend model (Gamma-Gamma) ->
P(alive), expected purchases, expected spend, discounted CLV.
"""

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
    BetaGeoModel,
    ModifiedBetaGeoModel,
    ParetoNBDModel,
    PurchaseModel,
)
from clv.spend import GammaGammaModel
from clv.value import value_customers

__version__ = "0.1.0"

__all__ = [
    "BetaGeoBetaBinomModel",
    "BetaGeoModel",
    "ClvError",
    "ClvWarning",
    "ConfigError",
    "ConvergenceWarning",
    "DataError",
    "FitError",
    "GammaGammaModel",
    "ModelFileError",
    "ModifiedBetaGeoModel",
    "NotFittedError",
    "ParetoNBDModel",
    "PurchaseModel",
    "RunConfig",
    "__version__",
    "load_config",
    "load_transactions",
    "rfm_summary",
    "value_customers",
]
