"""Spend models."""

from clv.spend.gamma_gamma import GammaGammaModel

__all__ = ["GammaGammaModel"]
