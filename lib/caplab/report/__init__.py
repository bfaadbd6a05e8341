"""Claims, evidence, verdict rules, provenance, the figure theme, and the index/scorecard."""
from caplab.report.record import Report

__all__ = ["Report"]
