"""What goes wrong in a formula: syntax problems (the formula is refused) and evaluation failures
(the run records an error and the pool keeps its size).

Azure's shapes: a syntax error is ``AutoScalingFormulaSyntaxError``; an evaluation that lacks
samples is ``InsufficientSampleData`` / "Autoscale evaluation failed due to insufficient sample
data" with a value ``Message`` = ``Line 1, Col 24: Insufficient data from data set: $RunningTasks
wanted 100%, received 0%`` (the REST reference, the pool autoscale event and Microsoft.Azure.Batch's
tests all show this shape; the column is the method call's opening parenthesis).
"""

from __future__ import annotations

SYNTAX_ERROR = "AutoScalingFormulaSyntaxError"
SYNTAX_MESSAGE = "The specified autoscale formula has a syntax error."
INSUFFICIENT_DATA = "InsufficientSampleData"
INSUFFICIENT_MESSAGE = "Autoscale evaluation failed due to insufficient sample data"
# Other evaluation failures (a wrong type, an undefined variable, a target out of range): Azure
# documents no code for them; this one follows its AutoScalingFormula* naming.
EVALUATION_ERROR = "AutoScalingFormulaEvaluationError"
EVALUATION_MESSAGE = "Autoscale evaluation failed due to an error in the formula"


class SyntaxProblem(Exception):
    """One syntax error at a place of the formula (line and column are 1-based)."""

    def __init__(self, line: int, col: int, message: str):
        super().__init__(f"Line {line}, Col {col}: {message}")
        self.line = line
        self.col = col
        self.message = message


class FormulaError(Exception):
    """An evaluation failure not yet tied to a place (the evaluator adds line and column)."""

    code = EVALUATION_ERROR
    summary = EVALUATION_MESSAGE


class InsufficientSamples(FormulaError):
    code = INSUFFICIENT_DATA
    summary = INSUFFICIENT_MESSAGE

    def __init__(self, metric: str, wanted: str, received: str):
        super().__init__(f"Insufficient data from data set: {metric} wanted {wanted}%, received {received}%")


class RunError(Exception):
    """An evaluation failure at a place: becomes ``AutoScaleRun.error``."""

    def __init__(self, code: str, summary: str, line: int, col: int, detail: str):
        super().__init__(f"Line {line}, Col {col}: {detail}")
        self.code = code
        self.summary = summary
        self.detail = f"Line {line}, Col {col}: {detail}"
