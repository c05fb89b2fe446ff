"""Outputs people read: the files of reports/<name>/ and the self-contained HTML report."""

from clv.report.html import build_report
from clv.report.outputs import rebuild_report, summary_dict, write_outputs

__all__ = ["build_report", "rebuild_report", "summary_dict", "write_outputs"]
