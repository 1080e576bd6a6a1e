"""Azure's leniencies on the wire: numbers sent as JSON strings (as the Azure CLI sends every
integer flag) are read as numbers wherever the spec says the property is one; a string that is no
number gets one error, whichever property it is."""

from __future__ import annotations

import json
from typing import Any

import pytest
from azure.batch import BatchClient

from tests.helpers.batchraw import error_values, raw
from tests.helpers.waiting import wait_for

VM = {"imageReference": {"publisher": "canonical", "offer": "0001-com-ubuntu-server-jammy", "sku": "22_04-lts"},
      "nodeAgentSKUId": "batch.node.ubuntu 22.04"}


def _json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def test_integers_sent_as_strings_are_read_as_numbers(client: BatchClient) -> None:
    status, body, _ = raw(client, "POST", "/pools", _json({
        "id": "strnum", "vmSize": "standard_d2s_v3", "virtualMachineConfiguration": VM,
        "targetDedicatedNodes": "1", "taskSlotsPerNode": " 2 ",
        "startTask": {"commandLine": "/bin/true", "maxTaskRetryCount": "+3"}}))
    assert status == 201, body
    pool = client.get_pool("strnum")
    assert (pool.target_dedicated_nodes, pool.task_slots_per_node) == (1, 2)
    assert pool.start_task is not None and pool.start_task.max_task_retry_count == 3
    wait_for(lambda: client.get_pool("strnum").allocation_state == "steady", "the pool to settle", 30)
    status, body, _ = raw(client, "POST", "/pools/strnum/resize", _json({"targetDedicatedNodes": "0"}))
    assert status == 202, body
    assert client.get_pool("strnum").target_dedicated_nodes == 0

    status, body, _ = raw(client, "POST", "/jobs", _json({
        "id": "strjob", "poolInfo": {"poolId": "strnum"}, "priority": "-5",
        "constraints": {"maxTaskRetryCount": "2"}}))
    assert status == 201, body
    status, body, _ = raw(client, "PATCH", "/jobs/strjob", _json({"priority": "100"}))
    assert status == 200, body
    job = client.get_job("strjob")
    assert job.priority == 100 and job.constraints is not None and job.constraints.max_task_retry_count == 2

    status, body, _ = raw(client, "POST", "/jobs/strjob/addtaskcollection", _json({"value": [
        {"id": "t1", "commandLine": "/bin/true", "requiredSlots": "1",
         "constraints": {"maxTaskRetryCount": "1"}, "exitConditions": {"exitCodes": [
             {"code": "3", "exitOptions": {"jobAction": "none"}}]}}]}))
    assert status == 200 and body["value"][0]["status"] == "success", body
    status, body, _ = raw(client, "PUT", "/jobs/strjob/tasks/t1", _json({"constraints": {"maxTaskRetryCount": "4"}}))
    assert status == 200, body
    task = client.get_task("strjob", "t1")
    assert task.constraints is not None and task.constraints.max_task_retry_count == 4
    codes = task.exit_conditions.exit_codes if task.exit_conditions is not None else None
    assert codes is not None and codes[0].code == 3


@pytest.mark.parametrize("value", ["one", "1.5", "", "0x10", "1e3", "99999999999"])
def test_a_string_that_is_no_integer_is_one_error(client: BatchClient, value: str) -> None:
    status, body, _ = raw(client, "POST", "/pools", _json({
        "id": "badnum", "vmSize": "standard_d2s_v3", "virtualMachineConfiguration": VM,
        "startTask": {"commandLine": "/bin/true", "maxTaskRetryCount": value}}))
    assert (status, body["code"]) == (400, "InvalidRequestBody"), body
    assert error_values(body)["PropertyName"] == "startTask.maxTaskRetryCount"
    assert "Edm.Int32" in error_values(body)["Reason"]
    status, body, _ = raw(client, "GET", "/pools/badnum")
    assert status == 404  # nothing half-made


def test_strings_stay_strings_where_the_spec_wants_strings(client: BatchClient) -> None:
    """Only properties the spec types as numbers are read as numbers: a display name of digits stays text."""
    status, body, _ = raw(client, "POST", "/pools", _json({
        "id": "digits", "displayName": "42", "vmSize": "standard_d2s_v3", "virtualMachineConfiguration": VM,
        "metadata": [{"name": "n", "value": "7"}]}))
    assert status == 201, body
    pool = client.get_pool("digits")
    assert pool.display_name == "42" and pool.metadata is not None and pool.metadata[0].value == "7"
