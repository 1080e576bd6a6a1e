"""Autoscale on pools without a network: add / enable / evaluate / disable and the periodic run,
with a sample source the test controls."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest

from openbatch.batch.domain import errors as e
from openbatch.batch.domain import pools
from openbatch.batch.domain.autoscale import METRICS, History
from openbatch.batch.domain.common import BatchContext, Doc
from openbatch.batch.domain.events import NullHooks
from openbatch.batch.store import BatchStore
from openbatch.config import Settings

T = TypeVar("T")
ACCOUNT = "acct"
JAMMY = {"imageReference": {"publisher": "Canonical", "offer": "0001-com-ubuntu-server-jammy", "sku": "22_04-LTS"},
         "nodeAgentSKUId": "batch.node.ubuntu 22.04"}


class Samples:
    """A SampleSource whose pools all see ``pending`` pending tasks."""

    def __init__(self) -> None:
        self.pending = 0.0

    def history(self, account: str, pool: Mapping[str, Any], now: float) -> History:
        history = History()
        history.add(now, {m: 0.0 for m in METRICS} | {"$PendingTasks": self.pending})
        return history


class Hooks(NullHooks):
    def __init__(self) -> None:
        self.changed: list[Doc] = []

    def pool_changed(self, account: str, pool: Doc) -> None:
        self.changed.append(dict(pool))


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[BatchContext]:
    store = BatchStore(tmp_path / "batch.db")
    yield BatchContext(settings=Settings(data_dir=tmp_path), store=store, hooks=Hooks(), compute=None,  # type: ignore[arg-type]
                       samples=Samples())
    store.close()


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def add(ctx: BatchContext, pool_id: str = "p", **kw: Any) -> Doc:
    body = {"id": pool_id, "vmSize": "STANDARD_A1", "virtualMachineConfiguration": JAMMY, **kw}
    return run(pools.add_pool(ctx, ACCOUNT, body, "http://batch.test"))


def settle(doc: Doc) -> None:
    """What the engine does after a resize: the pool is steady again."""
    doc["allocationState"] = "steady"


def samples(ctx: BatchContext) -> Samples:
    assert isinstance(ctx.samples, Samples)
    return ctx.samples


def test_a_new_autoscale_pool_is_evaluated_at_once(ctx: BatchContext) -> None:
    samples(ctx).pending = 3
    doc = add(ctx, enableAutoScale=True, autoScaleEvaluationInterval="PT5M",
              autoScaleFormula="$TargetDedicatedNodes = $PendingTasks; $NodeDeallocationOption = taskcompletion;")
    assert (doc["targetDedicatedNodes"], doc["targetLowPriorityNodes"], doc["allocationState"]) == (3, 0, "resizing")
    assert doc["autoScaleRun"]["results"] == ("$TargetDedicatedNodes=3;$TargetLowPriorityNodes=0;"
                                              "$NodeDeallocationOption=taskcompletion")
    assert "error" not in doc["autoScaleRun"] and doc["autoScaleRun"]["timestamp"].endswith("Z")
    assert doc["_nodeDeallocationOption"] == "taskcompletion" and isinstance(doc["_autoScaleStart"], float)
    assert ctx.hooks.changed[-1]["targetDedicatedNodes"] == 3  # type: ignore[attr-defined]


@pytest.mark.parametrize(("body", "error", "values"), [
    ({"enableAutoScale": True, "autoScaleFormula": "$TargetDedicatedNodes=1", "targetDedicatedNodes": 2},
     e.InvalidAutoScalingSettings, {"PropertyName": "targetDedicatedNodes"}),
    ({"enableAutoScale": False, "autoScaleFormula": "$TargetDedicatedNodes=1"},
     e.InvalidAutoScalingSettings, {"PropertyName": "autoScaleFormula"}),
    ({"autoScaleEvaluationInterval": "PT5M"}, e.InvalidAutoScalingSettings, {"PropertyName": "autoScaleEvaluationInterval"}),
    ({"enableAutoScale": True, "autoScaleFormula": "$TargetDedicatedNodes = (1"},
     e.AutoScalingFormulaSyntaxError, {"Message": "Line 1, Col 27: Expected ')' but found the end of the formula."}),
    ({"enableAutoScale": True, "autoScaleFormula": "x=1;" * 2049},
     e.AutoScaleFormulaTooLong, {"PropertyName": "autoScaleFormula", "PropertyValue": "8196 characters"}),
    ({"enableAutoScale": True, "autoScaleFormula": "x=1", "autoScaleEvaluationInterval": "PT169H"},
     e.InvalidPropertyValue, {"PropertyName": "autoScaleEvaluationInterval", "PropertyValue": "PT169H",
                              "Reason": "The value must be at most P7D."}),
])
def test_add_refuses_bad_autoscale_settings(ctx: BatchContext, body: Doc, error: type[e.BatchError],
                                            values: dict[str, str]) -> None:
    with pytest.raises(error) as refused:
        add(ctx, **body)
    assert refused.value.values == values
    assert ctx.store.get("pool", ACCOUNT, "p") is None  # nothing half-written


def test_a_zero_target_with_autoscale_is_harmless(ctx: BatchContext) -> None:
    doc = add(ctx, enableAutoScale=True, autoScaleFormula="$TargetLowPriorityNodes = 2;", targetDedicatedNodes=0)
    assert (doc["targetDedicatedNodes"], doc["targetLowPriorityNodes"]) == (0, 2)


def test_enable_evaluates_and_restarts_the_schedule_only_for_a_new_interval(ctx: BatchContext) -> None:
    add(ctx)
    with pytest.raises(e.MissingRequiredProperty):
        run(pools.enable_autoscale(ctx, ACCOUNT, "p", {}))
    doc = run(pools.enable_autoscale(ctx, ACCOUNT, "p", {"autoScaleFormula": "$TargetDedicatedNodes=1;"}))
    assert (doc["enableAutoScale"], doc["autoScaleEvaluationInterval"], doc["targetDedicatedNodes"]) == (True, "PT15M", 1)
    with pytest.raises(e.MissingRequiredProperty):  # enabled: a formula, an interval or both, not neither
        run(pools.enable_autoscale(ctx, ACCOUNT, "p", {}))
    with pytest.raises(e.PoolBeingResized):  # "You cannot enable automatic scaling ... if a resize operation is in progress"
        run(pools.enable_autoscale(ctx, ACCOUNT, "p", {"autoScaleFormula": "$TargetDedicatedNodes=2;"}))
    settle(doc)
    start = doc["_autoScaleStart"]
    doc = run(pools.enable_autoscale(ctx, ACCOUNT, "p", {"autoScaleFormula": "$TargetDedicatedNodes=2;"}))
    assert doc["_autoScaleStart"] == start and doc["targetDedicatedNodes"] == 2 and doc["autoScaleEvaluationInterval"] == "PT15M"
    settle(doc)
    doc = run(pools.enable_autoscale(ctx, ACCOUNT, "p", {"autoScaleEvaluationInterval": "PT1H"}))
    assert doc["_autoScaleStart"] > start and doc["autoScaleFormula"] == "$TargetDedicatedNodes=2;"
    assert doc["autoScaleEvaluationInterval"] == "PT1H" and doc["allocationState"] == "steady"  # same targets
    with pytest.raises(e.AutoScalingFormulaSyntaxError):
        run(pools.enable_autoscale(ctx, ACCOUNT, "p", {"autoScaleFormula": "$TargetDedicatedNodes=;"}))
    assert pools.get_pool(ctx, ACCOUNT, "p")["autoScaleFormula"] == "$TargetDedicatedNodes=2;"


def test_a_failing_run_is_kept_and_the_pool_keeps_its_size(ctx: BatchContext) -> None:
    add(ctx, targetDedicatedNodes=2)["allocationState"] = "steady"
    formula = "$TargetDedicatedNodes = avg($PendingTasks.GetSample(TimeInterval_Minute * 10, 50));"
    doc = run(pools.enable_autoscale(ctx, ACCOUNT, "p", {"autoScaleFormula": formula}))
    assert doc["targetDedicatedNodes"] == 2 and doc["allocationState"] == "steady"
    assert doc["autoScaleRun"]["error"] == {
        "code": "InsufficientSampleData", "message": "Autoscale evaluation failed due to insufficient sample data",
        "values": [{"name": "Message", "value": "Line 1, Col 52: Insufficient data from data set: $PendingTasks "
                                                "wanted 50%, received 5%"}]}
    assert doc["autoScaleRun"]["results"].startswith("$TargetDedicatedNodes=2;")


def test_evaluate_runs_without_applying(ctx: BatchContext) -> None:
    add(ctx)
    with pytest.raises(e.AutoScaleNotEnabled):
        pools.evaluate_autoscale(ctx, ACCOUNT, "p", {"autoScaleFormula": "$TargetDedicatedNodes=1;"})
    doc = run(pools.enable_autoscale(ctx, ACCOUNT, "p", {"autoScaleFormula": "$TargetDedicatedNodes=0;"}))
    etag = doc["eTag"]
    with pytest.raises(e.MissingRequiredProperty):
        pools.evaluate_autoscale(ctx, ACCOUNT, "p", {})
    samples(ctx).pending = 7
    result = pools.evaluate_autoscale(ctx, ACCOUNT, "p", {"autoScaleFormula": "$TargetDedicatedNodes=$PendingTasks;"})
    assert result["results"] == "$TargetDedicatedNodes=7;$TargetLowPriorityNodes=0;$NodeDeallocationOption=requeue"
    assert "error" not in result
    assert pools.get_pool(ctx, ACCOUNT, "p")["eTag"] == etag and doc["targetDedicatedNodes"] == 0
    result = pools.evaluate_autoscale(ctx, ACCOUNT, "p", {"autoScaleFormula": "a = ;\nb = bogus(1);\nc = 1"})
    assert "results" not in result and result["error"] == {
        "code": "AutoScalingFormulaSyntaxError", "message": "The specified autoscale formula has a syntax error.",
        "values": [{"name": "Message", "value": "Line 1, Col 5: Expected a value but found ';'."},
                   {"name": "Message", "value": "Line 2, Col 10: Unknown function 'bogus'."}]}


def test_resize_is_refused_and_disable_keeps_the_targets(ctx: BatchContext) -> None:
    add(ctx, enableAutoScale=True, autoScaleFormula="$TargetDedicatedNodes=3;")
    with pytest.raises(e.AutoScaleEnabled):
        run(pools.resize_pool(ctx, ACCOUNT, "p", {"targetDedicatedNodes": 1}))
    doc = run(pools.disable_autoscale(ctx, ACCOUNT, "p"))
    assert doc["enableAutoScale"] is False and doc["targetDedicatedNodes"] == 3
    assert not {"autoScaleFormula", "autoScaleEvaluationInterval", "autoScaleRun", "_autoScaleStart"} & set(doc)


def test_the_periodic_run(ctx: BatchContext) -> None:
    doc = add(ctx, enableAutoScale=True, autoScaleFormula="$TargetLowPriorityNodes = $PendingTasks;")
    first = doc["autoScaleRun"]["timestamp"]
    samples(ctx).pending = 4
    run(pools.autoscale_pool(ctx, ACCOUNT, "p"))
    doc = pools.get_pool(ctx, ACCOUNT, "p")
    assert doc["targetLowPriorityNodes"] == 4 and doc["allocationState"] == "resizing"
    assert doc["autoScaleRun"]["timestamp"] >= first
    doc["autoScaleFormula"] = "$TargetLowPriorityNodes = ("  # as an older openbatch could have stored it
    run(pools.autoscale_pool(ctx, ACCOUNT, "p"))
    assert doc["autoScaleRun"]["error"]["code"] == "AutoScalingFormulaSyntaxError"
    assert doc["targetLowPriorityNodes"] == 4
    run(pools.disable_autoscale(ctx, ACCOUNT, "p"))
    run(pools.autoscale_pool(ctx, ACCOUNT, "p"))  # a timer that fires after disable does nothing
    run(pools.autoscale_pool(ctx, ACCOUNT, "ghost"))
    assert "autoScaleRun" not in pools.get_pool(ctx, ACCOUNT, "p")
