"""Purchase models: one module per model."""

from clv.purchase.base import PurchaseModel
from clv.purchase.bgbb import BetaGeoBetaBinomModel
from clv.purchase.bgnbd import BetaGeoModel
from clv.purchase.cnbd import BetaGeoCNBDModel, ModifiedBetaGeoCNBDModel
from clv.purchase.mbgnbd import ModifiedBetaGeoModel
from clv.purchase.pareto_ggg import ParetoGGGModel
from clv.purchase.pareto_nbd import ParetoNBDModel

#: purchase models by their config name (model.purchase)
PURCHASE_MODELS: dict[str, type[PurchaseModel]] = {
    "bgnbd": BetaGeoModel,
    "pareto_nbd": ParetoNBDModel,
    "mbgnbd": ModifiedBetaGeoModel,
    "bgbb": BetaGeoBetaBinomModel,
    "mbgcnbd": ModifiedBetaGeoCNBDModel,
    "bgcnbd": BetaGeoCNBDModel,
    "pareto_ggg": ParetoGGGModel,
}

__all__ = [
    "PURCHASE_MODELS",
    "BetaGeoBetaBinomModel",
    "BetaGeoCNBDModel",
    "BetaGeoModel",
    "ModifiedBetaGeoCNBDModel",
    "ModifiedBetaGeoModel",
    "ParetoGGGModel",
    "ParetoNBDModel",
    "PurchaseModel",
]
