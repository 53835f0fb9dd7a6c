"""What a report shows, computed once and rendered twice (HTML by :mod:`.html`, markdown by
:mod:`.summary`). :mod:`.build` fills these; the renderers only read them, so the modules import
one way: build -> html/summary -> document (docs/architecture.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

from rankscope.report.figures import FigureResult
from rankscope.report.recommend import Recommendation
from rankscope.report.tables import Table, View
from rankscope.runstore.reader import RunStore


@dataclass
class RunReport:
    """Everything one run's report shows, computed once and rendered twice (HTML, markdown)."""

    store: RunStore
    views: list[View]
    recommendations: list[Recommendation]
    tables: list[Table]
    figures: list[FigureResult]
    failed: Table
    title: str = ""


@dataclass
class CompareReport:
    """Several runs side by side: their recommendations, key figures and one combined table."""

    runs: list[RunReport]
    combined: Table
    recommendations: Table
    notes: list[str] = field(default_factory=list)
    extra: list[Table] = field(default_factory=list)  # tables over all runs (predicted vs realised rank)
