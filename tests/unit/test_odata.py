"""OData $filter / $select parsing and evaluation (network-free)."""

from __future__ import annotations

from typing import Any

import pytest

from openbatch.batch.wire.odata import (
    ALWAYS,
    JOB_FILTER_PROPERTIES,
    NODE_FILTER_PROPERTIES,
    POOL_FILTER_PROPERTIES,
    TASK_FILE_FILTER_PROPERTIES,
    TASK_FILTER_PROPERTIES,
    ODataError,
    apply_select,
    parse_filter,
    parse_select,
)

TASKS: list[dict[str, Any]] = [
    {
        "id": "task-1",
        "state": "completed",
        "creationTime": "2024-01-01T10:00:00.1234567Z",
        "executionInfo": {"exitCode": 0, "result": "success", "retryCount": 0},
        "nodeInfo": {"nodeId": "tvm-1"},
    },
    {
        "id": "task-2",
        "state": "completed",
        "creationTime": "2024-01-02T10:00:00Z",
        "executionInfo": {"exitCode": 3, "result": "failure", "failureInfo": {"category": "usererror"}},
    },
    {"id": "task-10", "state": "active", "creationTime": "2024-01-03T12:00:00+02:00"},
    {"id": "Other", "state": "running", "creationTime": "2024-01-03T09:00:00Z", "displayName": "it's"},
]


def ids(text: str, docs: list[dict[str, Any]] = TASKS, **kw: Any) -> list[str]:
    flt = parse_filter(text, **kw)
    return [doc["id"] for doc in docs if flt(doc)]


# -- comparisons ----------------------------------------------------------------------------


def test_eq_on_state_is_case_insensitive() -> None:
    assert ids("state eq 'completed'") == ["task-1", "task-2"]
    assert ids("state eq 'Completed'") == ["task-1", "task-2"]
    assert ids("state ne 'completed'") == ["task-10", "Other"]


def test_id_comparisons_are_case_sensitive() -> None:
    assert ids("id eq 'other'") == []
    assert ids("id eq 'Other'") == ["Other"]
    assert ids("id gt 'task-1'") == ["task-2", "task-10"]
    assert ids("id ge 'task-1' and id lt 'task-2'") == ["task-1", "task-10"]


def test_integers_on_nested_paths() -> None:
    assert ids("executionInfo/exitCode eq 0") == ["task-1"]
    assert ids("executionInfo/exitCode ne 0") == ["task-2", "task-10", "Other"]  # missing is null
    assert ids("executionInfo/exitCode gt 0") == ["task-2"]
    assert ids("executionInfo/exitCode le 3") == ["task-1", "task-2"]
    assert ids("executionInfo/result eq 'Failure'") == ["task-2"]
    assert ids("executionInfo/failureInfo/category eq 'UserError'") == ["task-2"]
    assert ids("nodeInfo/nodeId eq 'tvm-1'") == ["task-1"]


def test_literal_on_the_left_is_flipped() -> None:
    assert ids("0 lt executionInfo/exitCode") == ["task-2"]
    assert ids("'completed' eq state") == ["task-1", "task-2"]


def test_missing_properties_compare_as_null() -> None:
    assert ids("executionInfo eq null") == ["task-10", "Other"]
    assert ids("executionInfo/exitCode eq null") == ["task-10", "Other"]
    assert ids("executionInfo/exitCode ne null") == ["task-1", "task-2"]
    assert ids("displayName gt 'a'") == ["Other"]
    assert ids("displayName lt 'zzz'") == ["Other"]
    assert ids("nope/deeper gt 1") == []


def test_incomparable_types_do_not_match_and_do_not_raise() -> None:
    assert ids("executionInfo/exitCode eq 'zero'") == []
    assert ids("state gt 3") == []
    assert ids("state ne 3") == ["task-1", "task-2", "task-10", "Other"]


def test_booleans() -> None:
    pools = [
        {"id": "a", "enableAutoScale": True},
        {"id": "b", "enableAutoScale": False},
        {"id": "c", "enableAutoScale": 1},
    ]
    assert ids("enableAutoScale eq true", pools) == ["a"]
    assert ids("enableAutoScale eq FALSE", pools) == ["b"]
    assert ids("enableAutoScale ne true", pools, properties=POOL_FILTER_PROPERTIES) == ["b", "c"]


def test_string_literal_quote_escaping() -> None:
    assert ids("displayName eq 'it''s'") == ["Other"]
    assert ids("displayName eq 'its'") == []


# -- date-times -----------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["DateTime", "datetime", "datetimeoffset"])
def test_datetime_literals_compare_as_instants(prefix: str) -> None:
    assert ids(f"creationTime gt {prefix}'2024-01-02T00:00:00Z'") == ["task-2", "task-10", "Other"]


def test_datetime_seven_fractional_digits_and_offsets() -> None:
    # task-1 was created at 10:00:00.1234567Z: strictly after 10:00:00.1Z, before .2
    assert ids("creationTime gt DateTime'2024-01-01T10:00:00.1Z'") != ids(
        "creationTime gt DateTime'2024-01-01T10:00:00.2Z'"
    )
    assert "task-1" in ids("creationTime gt DateTime'2024-01-01T10:00:00.1Z'")
    assert "task-1" not in ids("creationTime gt DateTime'2024-01-01T10:00:00.2Z'")
    # task-10 at 12:00+02:00 is 10:00Z; Other at 09:00Z
    assert ids(
        "creationTime ge DateTime'2024-01-03T10:00:00Z' and creationTime le DateTime'2024-01-03T10:00:00Z'"
    ) == ["task-10"]
    assert ids(
        "creationTime lt DateTime'2024-01-03T11:00:00+01:00' and creationTime gt DateTime'2024-01-03'"
    ) == ["Other"]


def test_bare_iso_datetime_literal() -> None:
    assert ids("creationTime lt 2024-01-01T12:00:00Z") == ["task-1"]


def test_quoted_datetime_accepted_for_typed_datetime_property() -> None:
    got = ids("creationTime lt '2024-01-01T12:00:00Z'", properties=TASK_FILTER_PROPERTIES)
    assert got == ["task-1"]


def test_invalid_datetime_literal() -> None:
    with pytest.raises(ODataError, match="date-time"):
        parse_filter("creationTime gt DateTime'yesterday'")


# -- boolean structure ----------------------------------------------------------------------


def test_and_binds_tighter_than_or_and_parentheses_override() -> None:
    assert ids("state eq 'active' or state eq 'completed' and executionInfo/exitCode eq 3") == [
        "task-2",
        "task-10",
    ]
    assert ids("(state eq 'active' or state eq 'completed') and executionInfo/exitCode eq 3") == ["task-2"]
    assert ids("state eq 'running' or state eq 'active' or id eq 'task-1'") == ["task-1", "task-10", "Other"]


def test_not() -> None:
    assert ids("not state eq 'completed'") == ["task-10", "Other"]
    assert ids("not (state eq 'completed' or state eq 'active')") == ["Other"]
    assert ids("not startswith(id, 'task')") == ["Other"]


def test_keywords_are_case_insensitive() -> None:
    assert ids("state EQ 'active' OR id Eq 'Other'") == ["task-10", "Other"]


def test_startswith_and_friends() -> None:
    assert ids("startswith(id,'task-1')") == ["task-1", "task-10"]
    assert ids("startswith(id, 'TASK')") == []  # ids are case-sensitive
    assert ids("startswith(state,'COMP')") == ["task-1", "task-2"]  # enum values are not
    assert ids("startswith(id,'task-1') eq true") == ["task-1", "task-10"]
    assert ids("startswith(id,'task-1') eq false") == ["task-2", "Other"]
    assert ids("endswith(id,'-10')") == ["task-10"]
    assert ids("substringof('ask-', id)") == ["task-1", "task-2", "task-10"]
    assert ids("startswith(displayName,'it')") == ["Other"]


def test_files_filter_on_name() -> None:
    files = [{"name": "stdout.txt"}, {"name": "wd/out.txt"}, {"name": "wd/sub/x"}]
    flt = parse_filter("startswith(name,'wd/')", TASK_FILE_FILTER_PROPERTIES)
    assert [f["name"] for f in files if flt(f)] == ["wd/out.txt", "wd/sub/x"]


def test_empty_filter_matches_everything() -> None:
    assert parse_filter("") is ALWAYS
    assert parse_filter("   ").matches_all
    assert ids("  ") == ["task-1", "task-2", "task-10", "Other"]


# -- equalities -----------------------------------------------------------------------------


def test_equalities_are_top_level_anded_string_terms() -> None:
    assert parse_filter("state eq 'Active'").equalities() == {"state": "active"}
    flt = parse_filter("state eq 'completed' and (id eq 'a' or id eq 'b') and executionInfo/exitCode eq 0")
    assert flt.equalities() == {"state": "completed"}
    flt = parse_filter("(state eq 'completed' and id eq 'Task-1') and executionInfo/result eq 'failure'")
    assert flt.equalities() == {"state": "completed", "id": "Task-1", "executionInfo/result": "failure"}
    assert parse_filter("state eq 'a' or state eq 'b'").equalities() == {}
    assert parse_filter("not state eq 'a'").equalities() == {}
    assert parse_filter("state ne 'a'").equalities() == {}
    assert parse_filter("").equalities() == {}


def test_equalities_are_necessary_conditions() -> None:
    flt = parse_filter("state eq 'completed' and executionInfo/exitCode gt 0")
    for doc in TASKS:
        if flt(doc):
            assert all(str(doc.get(k, "")).lower() == v for k, v in flt.equalities().items())


# -- property sets and errors ---------------------------------------------------------------


def test_properties_restrict_and_canonicalize() -> None:
    flt = parse_filter("STATE eq 'active' and executioninfo/exitcode eq 1", TASK_FILTER_PROPERTIES)
    assert flt.properties == {"state", "executionInfo/exitCode"}
    assert flt({"state": "active", "executionInfo": {"exitCode": 1}})
    with pytest.raises(ODataError, match="commandLine"):
        parse_filter("commandLine eq 'x'", TASK_FILTER_PROPERTIES)
    with pytest.raises(ODataError, match="vmSize"):
        parse_filter("vmSize eq 'x'", JOB_FILTER_PROPERTIES)
    assert parse_filter("vmSize eq 'standard_a1'", POOL_FILTER_PROPERTIES)({"vmSize": "standard_a1"})


def test_plain_collection_of_properties() -> None:
    assert parse_filter("state eq 'active'", {"state"})({"state": "active"})
    with pytest.raises(ODataError):
        parse_filter("id eq 'x'", ["state"])


def test_documented_alias_last_modified_time() -> None:
    flt = parse_filter("lastModifiedTime gt DateTime'2024-01-01T00:00:00Z'", TASK_FILTER_PROPERTIES)
    assert flt({"lastModified": "2024-02-01T00:00:00Z"})
    assert not flt({"lastModified": "2023-02-01T00:00:00Z"})


def test_node_filters() -> None:
    nodes = [
        {
            "id": "n1",
            "state": "idle",
            "startTaskInfo": {"state": "completed", "exitCode": 0, "result": "success"},
        },
        {"id": "n2", "state": "starttaskfailed", "startTaskInfo": {"state": "completed", "exitCode": 1}},
    ]
    flt = parse_filter("startTaskInfo/exitCode ne 0 or state eq 'StartTaskFailed'", NODE_FILTER_PROPERTIES)
    assert [n["id"] for n in nodes if flt(n)] == ["n2"]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("state eq", "expected a property name or a literal"),
        ("state eq 'x", "unterminated"),
        ("state == 'x'", "unexpected character"),
        ("state 'x'", "comparison operator"),
        ("state eq 'a' and", "expected"),
        ("(state eq 'a'", "')'"),
        ("state eq 'a')", "unexpected token"),
        ("1 eq 1", "one property and one literal"),
        ("state eq id", "one property and one literal"),
        ("startswith(id)", "','"),
        ("startswith('x', id)", "property and a string literal"),
        ("startswith(id, 3)", "property and a string literal"),
        ("startswith(id,'a') eq 'yes'", "true or false"),
        ("state", "comparison operator"),
        ("and", "expected a property name"),
        ("state eq 'a' state eq 'b'", "unexpected token"),
        ("a/ eq 1", "unexpected character"),
    ],
)
def test_syntax_errors(text: str, fragment: str) -> None:
    with pytest.raises(ODataError) as info:
        parse_filter(text)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "text",
    [
        "state eq 1",
        "executionInfo/exitCode eq 'x'",
        "creationTime gt 'not a date'",
        "creationTime gt 5",
    ],
)
def test_typed_properties_reject_wrong_literals(text: str) -> None:
    with pytest.raises(ODataError, match="wrong type"):
        parse_filter(text, TASK_FILTER_PROPERTIES)


def test_null_allowed_for_typed_properties() -> None:
    flt = parse_filter("executionInfo/exitCode eq null", TASK_FILTER_PROPERTIES)
    assert flt({}) and not flt({"executionInfo": {"exitCode": 0}})


def test_filter_scales_to_many_documents() -> None:
    docs = [{"id": f"t{i}", "state": "completed" if i % 3 == 0 else "active"} for i in range(100_000)]
    flt = parse_filter("state eq 'completed'")
    assert sum(1 for doc in docs if flt(doc)) == 33_334


# -- $select --------------------------------------------------------------------------------

DOC: dict[str, Any] = {
    "id": "t",
    "state": "completed",
    "commandLine": "x",
    "executionInfo": {"exitCode": 1, "result": "failure", "retryCount": 0},
    "resourceFiles": [{"httpUrl": "u1", "filePath": "a"}, {"httpUrl": "u2", "filePath": "b"}],
    "odata.metadata": "meta",
}


def test_select_top_level_and_nested() -> None:
    sel = parse_select("id,executionInfo/exitCode")
    assert apply_select(DOC, sel) == {"id": "t", "executionInfo": {"exitCode": 1}, "odata.metadata": "meta"}


def test_select_whole_object_wins_over_nested() -> None:
    sel = parse_select("executionInfo/exitCode, executionInfo")
    assert apply_select(DOC, sel)["executionInfo"] == DOC["executionInfo"]
    sel = parse_select("executionInfo, executionInfo/exitCode")
    assert apply_select(DOC, sel)["executionInfo"] == DOC["executionInfo"]


def test_select_through_lists_and_missing() -> None:
    sel = parse_select("resourceFiles/filePath,nodeInfo,nodeInfo/nodeId,state")
    assert apply_select(DOC, sel) == {
        "resourceFiles": [{"filePath": "a"}, {"filePath": "b"}],
        "state": "completed",
        "odata.metadata": "meta",
    }


def test_select_does_not_mutate_the_document() -> None:
    before = repr(DOC)
    apply_select(DOC, parse_select("executionInfo/result"))
    assert repr(DOC) == before


def test_select_all() -> None:
    assert parse_select("*").selects_all
    assert parse_select("").selects_all
    assert apply_select(DOC, parse_select("id,*")) == DOC


@pytest.mark.parametrize("text", ["id,,state", "id state", "exec/", "/id", "id;drop", "a/b/"])
def test_select_syntax_errors(text: str) -> None:
    with pytest.raises(ODataError):
        parse_select(text)


@pytest.mark.parametrize("text", [
    "not " * 300 + "state eq 'active'",
    "(" * 300 + "state eq 'active'" + ")" * 300,
    "not (" * 200 + "state eq 'active'" + ")" * 200,
    "(" * 5000,
])
def test_nesting_beyond_the_limit_is_a_filter_error_not_a_recursion_error(text: str) -> None:
    with pytest.raises(ODataError) as info:
        parse_filter(text, TASK_FILTER_PROPERTIES)
    assert "nested more than" in str(info.value)
    assert len(str(info.value)) < 600  # the message quotes the filter, shortened


def test_nesting_within_the_limit_still_works() -> None:
    flt = parse_filter("not " * 50 + "(" * 40 + "state eq 'active'" + ")" * 40, TASK_FILTER_PROPERTIES)
    assert flt({"state": "active"}) is True  # an even number of nots
    assert flt({"state": "completed"}) is False
