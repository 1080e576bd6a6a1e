"""Azure Batch's autoscale formula language: lexer, parser, checks, evaluator, sample histories.

``compile_formula(text)`` parses and checks a formula (FormulaSyntaxError lists the bad
statements, each ``Line L, Col C: ...``); ``evaluate(formula, environment)`` runs it against a
pool's values and sample history and returns the results string, the new targets and any error.
The package knows no store, no HTTP and no clock of its own: callers pass the time and the history.
"""

from __future__ import annotations

from openbatch.batch.domain.autoscale.check import Formula, FormulaSyntaxError, compile_formula
from openbatch.batch.domain.autoscale.evaluator import Environment, Outcome, evaluate
from openbatch.batch.domain.autoscale.samples import METRICS, History, NoSamples, SampleSource

__all__ = ["METRICS", "Environment", "Formula", "FormulaSyntaxError", "History", "NoSamples", "Outcome",
           "SampleSource", "compile_formula", "evaluate"]
