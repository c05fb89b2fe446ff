"""Reading and validating transactions, the RFM summary, and the embedded data sets."""

from clv.data.datasets import EMBEDDED_DATASETS, dataset_path, load_donations
from clv.data.profile import DataProfile, profile_transactions
from clv.data.rfm import RFM_COLUMNS, RfmSummary, rfm_summary, validate_rfm
from clv.data.transactions import RowProblem, Transactions, ValidationReport, load_transactions

__all__ = [
    "EMBEDDED_DATASETS",
    "RFM_COLUMNS",
    "DataProfile",
    "RfmSummary",
    "RowProblem",
    "Transactions",
    "ValidationReport",
    "dataset_path",
    "load_donations",
    "load_transactions",
    "profile_transactions",
    "rfm_summary",
    "validate_rfm",
]
