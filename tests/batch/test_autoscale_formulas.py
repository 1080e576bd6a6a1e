"""The autoscale formula language without a server: lexer, parser, checks, evaluator, functions,
printing. Expected values follow learn.microsoft.com "Create a formula to automatically scale
compute nodes in a Batch pool" and the results Azure printed in recorded sessions."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from openbatch.batch.domain.autoscale import (
    Environment,
    FormulaSyntaxError,
    History,
    Outcome,
    compile_formula,
    evaluate,
)
from openbatch.batch.domain.autoscale.lexer import tokenize
from openbatch.batch.domain.autoscale.samples import METRICS
from openbatch.batch.domain.autoscale.values import Span, format_double, format_interval, format_value

NOW = datetime(2024, 1, 1, 12, 0, 0, 123000, tzinfo=UTC)  # a Monday


def env(**kw: object) -> Environment:
    history = History()
    history.catch_up(NOW.timestamp(), {m: 0.0 for m in METRICS})
    defaults: dict[str, object] = {"now": NOW, "history": history, "dedicated": 0, "low_priority": 0,
                                   "rand": lambda: 0.25}
    return Environment(**{**defaults, **kw})  # type: ignore[arg-type]


def run(text: str, **kw: object) -> Outcome:
    return evaluate(compile_formula(text), env(**kw))


def user(text: str, name: str = "x", **kw: object) -> str:
    """The printed value of user variable ``name`` after ``text``."""
    outcome = run(text, **kw)
    assert outcome.error is None, outcome.error
    values = dict(part.split("=", 1) for part in outcome.results.split(";"))
    return values[f"${name}"]


def problems(text: str) -> list[str]:
    with pytest.raises(FormulaSyntaxError) as exc:
        compile_formula(text)
    return [str(p) for p in exc.value.problems]


# --- lexer -----------------------------------------------------------------------------------------


def test_tokens_carry_lines_and_columns() -> None:
    tokens = tokenize('$a = 1.5e1; // note\n  b=time("2024-01-01")/*x*/>=.5')
    assert [(t.kind, t.text, t.line, t.col) for t in tokens] == [
        ("name", "$a", 1, 1), ("op", "=", 1, 4), ("number", "1.5e1", 1, 6), ("op", ";", 1, 11),
        ("name", "b", 2, 3), ("op", "=", 2, 4), ("name", "time", 2, 5), ("op", "(", 2, 9),
        ("string", '"2024-01-01"', 2, 10), ("op", ")", 2, 22), ("op", ">=", 2, 28), ("number", ".5", 2, 30),
        ("end", "", 2, 32),
    ]


@pytest.mark.parametrize(("text", "message"), [
    ("x = 1 # 2", "Line 1, Col 7: Unexpected character '#'."),
    ('x = "open', "Line 1, Col 5: The string is not closed."),
    ("x = 1;\n /* never closed", "Line 2, Col 2: The comment is not closed with */."),
    ("x = 1 & 2", "Line 1, Col 7: Unexpected character '&'."),
])
def test_lexer_errors(text: str, message: str) -> None:
    assert problems(text) == [message]


# --- parser and checks -----------------------------------------------------------------------------


@pytest.mark.parametrize(("expr", "value"), [
    ("2 + 3 * 4", "14"), ("(2 + 3) * 4", "20"), ("10 - 4 - 3", "3"), ("12 / 3 / 2", "2"),
    ("-2 * -3", "6"), ("!0 + 1", "2"), ("2 * 3 < 7", "1"), ("1 + 1 == 2", "1"), ("1 < 2 == 1", "1"),
    ("0 && 1 || 1", "1"), ("1 || 0 && 0", "1"), ("1 ? 2 : 3 + 4", "2"), ("0 ? 2 : 0 ? 3 : 4", "4"),
    ("1 ? 0 ? 5 : 6 : 7", "6"), ("2 > 1 && 3 >= 3 && 4 != 5 && 1 <= 1", "1"), ("- - 3", "3"),
])
def test_precedence_and_associativity(expr: str, value: str) -> None:
    assert user(f"x = {expr};") == value


def test_statements_comments_and_semicolons() -> None:
    text = """
        // the documented task-based example, comments and line breaks included
        $samples = 100;;
        $tasks = $samples < 70 ? 1 : 5;   // trailing comment
        /* a block comment */ $TargetDedicatedNodes = max(0, min($tasks, 20))
    """
    outcome = run(text)
    assert outcome.error is None and outcome.dedicated == 5
    assert outcome.results == ("$TargetDedicatedNodes=5;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue;"
                               "$samples=100;$tasks=5")


def test_every_bad_statement_is_reported_with_its_place() -> None:
    assert problems("x = 1 +;\ny = foo(2);\n$CPUPercent = 3; z = (1; w = max(1,") == [
        "Line 1, Col 8: Expected a value but found ';'.",
        "Line 2, Col 8: Unknown function 'foo'.",
        "Line 3, Col 1: $CPUPercent is read-only: it cannot be assigned.",
        "Line 3, Col 24: Expected ')' but found ';'.",
        "Line 3, Col 36: Expected a value but found the end of the formula.",
    ]


@pytest.mark.parametrize(("text", "message"), [
    ("x = avg();", "Line 1, Col 8: avg() takes at least 1 arguments, not 0."),
    ("x = val(1);", "Line 1, Col 8: val() takes 2 arguments, not 1."),
    ("x = rand(1);", "Line 1, Col 9: rand() takes 0 arguments, not 1."),
    ("x = $CPUPercent.GetSomething(1);", "Line 1, Col 29: Unknown method 'GetSomething'."),
    ("x = $CPUPercent.Count(1);", "Line 1, Col 22: Count takes 0 arguments, not 1."),
    ("x = $CPUPercent.GetSample();", "Line 1, Col 26: GetSample takes 1 to 3 arguments, not 0."),
    ("y = 1; x = y.GetSample(1);", "Line 1, Col 23: The method GetSample applies to the read-only service "
                                   "variables only."),
    ("x = time().hours;", "Line 1, Col 12: Unknown member 'hours': a timestamp has year, month, day, weekday, "
                          "hour, minute, second."),
    ("TimeInterval_Hour = 5;", "Line 1, Col 1: TimeInterval_Hour is read-only: it cannot be assigned."),
    ("x = 1 y = 2", "Line 1, Col 7: Expected ';' but found 'y'."),
    ("x = 1 = 2", "Line 1, Col 7: Expected ';' but found '='."),
    ("x = $a.$b", "Line 1, Col 8: Expected a member or method name but found '$b'."),
])
def test_checks(text: str, message: str) -> None:
    assert problems(text) == [message]


def test_at_most_100_statements() -> None:
    compile_formula("x = 1;" * 100)
    assert problems("x = 1;" * 101) == ["Line 1, Col 601: A formula can have at most 100 statements."]


# --- types and operators ---------------------------------------------------------------------------


@pytest.mark.parametrize(("expr", "value"), [
    ("1 / 0", "Infinity"), ("-1 / 0", "-Infinity"), ("0 / 0", "NaN"), ("10 / 4", "2.5"), ("1 / 3", "0.3333333333333333"),
    ("1e15", "1E+15"), ("123456789012345", "123456789012345"), ("0.00001", "1E-05"), ("0.0001", "0.0001"),
    ("[1, 2] + 1", "[2,3]"), ("[1, 2] * [3, 4]", "[3,8]"), ("2 - [1, 2]", "[1,0]"), ("-[1, 2]", "[-1,-2]"),
    ("[]", "[]"), ("[[1, 2], 3]", "[1,2,3]"),
    ("TimeInterval_Minute * 3", "00:03:00"), ("2 * TimeInterval_Hour + TimeInterval_Second", "02:00:01"),
    ("TimeInterval_Day / 4", "06:00:00"), ("-TimeInterval_Week", "-7.00:00:00"), ("TimeInterval_100ns", "00:00:00.0000001"),
    ("TimeInterval_Year", "365.00:00:00"), ("TimeInterval_Millisecond * 1500", "00:00:01.5000000"),
    ("TimeInterval_Hour / TimeInterval_Minute", "60"), ("TimeInterval_Zero", "00:00:00"),
    ("time() + TimeInterval_Hour", "2024-01-01T13:00:00.123Z"), ("TimeInterval_Day + time()", "2024-01-02T12:00:00.123Z"),
    ("time() - TimeInterval_Minute", "2024-01-01T11:59:00.123Z"),
    ('time() - time("2024-01-01T00:00:00Z")', "12:00:00.1230000"),
    ('"abc" < "abd"', "1"), ('"a" == "a"', "1"), ("TimeInterval_Hour > TimeInterval_Minute", "1"),
    ('time() > time("Mon, 01 Jan 2024 11:00:00 GMT")', "1"), ('"text"', "text"),
    ("requeue == requeue", "1"), ("taskcompletion != terminate", "1"),
])
def test_values_and_how_they_print(expr: str, value: str) -> None:
    assert user(f"x = {expr};") == value


@pytest.mark.parametrize(("text", "detail"), [
    ('x = 1 + "a";', "Line 1, Col 7: The operator + does not apply to a double and a string."),
    ("x = [1, 2] + [1];", "Line 1, Col 12: The operator + needs doubleVecs of one length, not 2 and 1."),
    ("x = [1] < 2;", "Line 1, Col 9: The operator < does not apply to a doubleVec and a double."),
    ("x = time() * 2;", "Line 1, Col 12: The operator * does not apply to a timestamp and a double."),
    ('x = "a" ? 1 : 2;', "Line 1, Col 9: The operator ?: needs a double, not a string."),
    ("x = y + 1;", "Line 1, Col 5: The variable y is not defined."),
    ("x = (1).hour;", "Line 1, Col 9: Only a timestamp has a member hour, not a double."),
    ("x = !time();", "Line 1, Col 5: The operator ! needs a double, not a timestamp."),
    ("x = requeue < terminate;", "Line 1, Col 13: The operator < does not apply to a nodeDeallocationOption and a "
                                 "nodeDeallocationOption."),
])
def test_type_errors_stop_the_run(text: str, detail: str) -> None:
    outcome = run(text + " $TargetDedicatedNodes = 4;", dedicated=2)
    assert outcome.error is not None
    assert (outcome.error.code, outcome.error.summary, outcome.error.detail) == (
        "AutoScalingFormulaEvaluationError", "Autoscale evaluation failed due to an error in the formula", detail)
    assert outcome.dedicated == 2  # the pool keeps its size
    assert outcome.results.startswith("$TargetDedicatedNodes=2;")


def test_logical_operators_short_circuit() -> None:
    assert user("x = 0 && undefined;") == "0"
    assert user("x = 1 || undefined;") == "1"


def test_timestamp_members() -> None:
    assert user("t = time(); x = t.year * 10000 + t.month * 100 + t.day;") == "20240101"
    assert user("t = time(); x = t.weekday;") == "1"  # Monday
    assert user('t = time("Sun, 07 Jan 2024 23:59:58 GMT"); x = t.weekday * 1000 + t.hour;') == "7023"
    assert user("t = time(); x = t.minute * 100 + t.second;") == "0"


# --- functions --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("expr", "value"), [
    ("avg(1, 2, 3, 6)", "3"), ("avg([1, 2, 3], 6)", "3"), ("len([1, 2, 3], 4)", "4"), ("len([])", "0"),
    ("lg(8)", "3"), ("lg([2, 4])", "[1,2]"), ("ln(1)", "0"), ("ln(0)", "-Infinity"), ("ln(-1)", "NaN"),
    ("log(1000)", "3"), ("log([10], 100)", "[1,2]"), ("max(1, [5, 2], 3)", "5"), ("min(4, [5, 2], 3)", "2"),
    ("norm(3, 4)", "5"), ("percentile([5, 1, 4, 2, 3], 40)", "2"), ("percentile([5, 1, 4, 2, 3], 100)", "5"),
    ("percentile([5, 1, 4, 2, 3], 0)", "1"), ("rand()", "0.25"), ("range([4, 9], 1)", "8"),
    ("std(2, 4, 4, 4, 5, 5, 7, 9)", "2.138089935299395"), ("sum([1, 2], 3)", "6"), ("sum()", "0"),
    ("val([7, 8, 9], 1)", "8"), ("ceil(1.2)", "2"), ("ceil([1.2, -1.2])", "[2,-1]"), ("floor(-1.5)", "-2"),
    ("round(2.5)", "3"), ("round(-2.5)", "-3"), ("round([0.4, 1.6])", "[0,2]"),
    ("AVG(1, 3)", "2"), ('time("2024-02-03T04:05:06Z")', "2024-02-03T04:05:06.000Z"), ("time()", "2024-01-01T12:00:00.123Z"),
    ('time("")', "2024-01-01T12:00:00.123Z"),
])
def test_functions(expr: str, value: str) -> None:
    assert user(f"x = {expr};") == value


@pytest.mark.parametrize(("expr", "detail"), [
    ("avg([])", "Line 1, Col 8: avg() of an empty list has no value."),
    ("max([], [])", "Line 1, Col 8: max() of an empty list has no value."),
    ("std(1)", "Line 1, Col 8: std() is the sample standard deviation: it needs at least two values."),
    ("val([1, 2], 2)", "Line 1, Col 8: val(): the index 2 is outside the vector (length 2)."),
    ("val([1, 2], 0.5)", "Line 1, Col 8: val(): the index 0.5 is outside the vector (length 2)."),
    ("percentile([1], 101)", "Line 1, Col 15: percentile() takes a percentage from 0 to 100, not 101."),
    ('time("yesterday")', "Line 1, Col 9: time(): 'yesterday' is not a W3C-DTF or RFC 1123 date."),
    ("time(5)", "Line 1, Col 9: time() takes a W3C-DTF or RFC 1123 date string, not a double."),
    ('sum("a")', "Line 1, Col 8: sum() takes doubles and doubleVecs, not a string."),
])
def test_function_errors(expr: str, detail: str) -> None:
    outcome = run(f"x = {expr};")
    assert outcome.error is not None and outcome.error.detail == detail


def test_stop_ends_the_evaluation_keeping_what_was_assigned() -> None:
    outcome = run("$TargetDedicatedNodes = 3; x = 1; 1 ? stop() : 0; $TargetDedicatedNodes = 9; y = 2;")
    assert outcome.error is None and outcome.dedicated == 3
    assert outcome.results.endswith(";$x=1")


# --- service variables and results -------------------------------------------------------------------


def test_results_list_the_service_variables_then_user_variables_by_name() -> None:
    # the documented time-based example and its documented result shape
    outcome = run("""$curTime = time();
        $workHours = $curTime.hour >= 8 && $curTime.hour < 18;
        $isWeekday = $curTime.weekday >= 1 && $curTime.weekday <= 5;
        $isWorkingWeekdayHour = $workHours && $isWeekday;
        $TargetDedicatedNodes = $isWorkingWeekdayHour ? 20:10;
        $NodeDeallocationOption = taskcompletion;""")
    assert outcome.results == ("$TargetDedicatedNodes=20;$TargetLowPriorityNodes=0;"
                               "$NodeDeallocationOption=taskcompletion;$curTime=2024-01-01T12:00:00.123Z;"
                               "$isWeekday=1;$isWorkingWeekdayHour=1;$workHours=1")
    assert (outcome.dedicated, outcome.low_priority, outcome.option) == (20, 0, "taskcompletion")


def test_targets_start_at_the_pools_and_aliases_yield_to_full_names() -> None:
    outcome = run("$TargetLowPriorityNodes = $TargetLowPriorityNodes + 1; half = $TargetDedicatedNodes / 2;",
                  dedicated=6, low_priority=2)
    assert (outcome.dedicated, outcome.low_priority) == (6, 3) and ";$half=3" in outcome.results
    outcome = run("$TargetDedicated = 4; $targetdedicatednodes = 5; $TargetLowPriority = 1;")
    assert (outcome.dedicated, outcome.low_priority) == (5, 1)
    assert outcome.results.startswith("$TargetDedicatedNodes=5;$TargetLowPriorityNodes=1;")


def test_dollar_is_optional_for_user_variables() -> None:
    assert user("$n = 2; x = n * 3;") == "6"


def test_fractional_targets_are_rounded_down() -> None:
    outcome = run("$TargetDedicatedNodes = 2.7;")
    assert outcome.dedicated == 2 and outcome.results.startswith("$TargetDedicatedNodes=2.7;")


@pytest.mark.parametrize(("text", "detail"), [
    ("$TargetDedicatedNodes = -1;", "Line 1, Col 1: $TargetDedicatedNodes must be a number from 0 to 1000 (the most "
                                    "nodes a pool may have on openbatch), not -1."),
    ("$TargetLowPriorityNodes = 0 / 0;", "Line 1, Col 1: $TargetLowPriorityNodes must be a number from 0 to 1000 (the "
                                         "most nodes a pool may have on openbatch), not NaN."),
    ("$TargetDedicatedNodes = 600; $TargetLowPriorityNodes = 401;",
     "Line 1, Col 30: A pool may have at most 1000 nodes (dedicated and low-priority together) on openbatch, not 1001."),
    ("$TargetDedicatedNodes = time();", "Line 1, Col 1: $TargetDedicatedNodes takes a double, not a timestamp."),
    ("$NodeDeallocationOption = 3;", "Line 1, Col 1: $NodeDeallocationOption takes one of requeue, terminate, "
                                     "taskcompletion, retaineddata, not double."),
    ('$NodeDeallocationOption = "later";', "Line 1, Col 1: $NodeDeallocationOption takes one of requeue, terminate, "
                                           "taskcompletion, retaineddata, not later."),
])
def test_bad_targets(text: str, detail: str) -> None:
    outcome = run(text)
    assert outcome.error is not None and outcome.error.detail == detail
    assert (outcome.dedicated, outcome.low_priority) == (0, 0)


def test_deallocation_option_keywords_and_strings() -> None:
    for text, option in (("$NodeDeallocationOption = retaineddata;", "retaineddata"),
                         ('$NodeDeallocationOption = "Terminate";', "terminate"),
                         ("$NodeDeallocationOption = 1 ? taskcompletion : requeue; o = $NodeDeallocationOption;",
                          "taskcompletion")):
        assert run(text).option == option
    assert user("$NodeDeallocationOption = terminate; x = $NodeDeallocationOption;") == "terminate"


def test_read_only_variables_read_current_values_and_latest_samples() -> None:
    history = History()
    values = {m: 0.0 for m in METRICS} | {"$ActiveTasks": 4.0, "$RunningTasks": 2.0, "$PendingTasks": 6.0}
    history.catch_up(NOW.timestamp(), values)
    outcome = run("x = $PendingTasks + $CurrentDedicatedNodes * 10 + $TaskSlotsPerNode * 100 + $currentDedicated;",
                  history=history, current={"$CurrentDedicatedNodes": 3.0, "$TaskSlotsPerNode": 4.0})
    assert outcome.results.endswith("$x=439")


def test_printing() -> None:
    assert [format_double(x) for x in (3.0, -0.0, 1e16, 2.5e-7, 1e300, 12345.678, math.pi)] == [
        "3", "-0", "1E+16", "2.5E-07", "1E+300", "12345.678", "3.141592653589793"]
    assert format_interval(Span(-15_000_000)) == "-00:00:01.5000000"
    assert format_interval(Span(864_000_000_000 * 2 + 10)) == "2.00:00:00.0000010"
    assert format_value((1.0, 0.5)) == "[1,0.5]"


def test_nesting_is_bounded_so_no_formula_exhausts_the_stack() -> None:
    compile_formula("x = " + "(" * 63 + "1" + ")" * 63 + ";")
    for text in ("x = " + "(" * 3000 + "1" + ")" * 3000, "x = " + "-" * 5000 + "1", "x = " + "+".join(["1"] * 3000),
                 "x = " + "1 ? " * 2000 + "1" + " : 1" * 2000, "x = time()" + ".hour" * 100):
        [problem] = problems(text)
        assert problem.endswith(": The expression nests too deeply (at most 64 levels).")
