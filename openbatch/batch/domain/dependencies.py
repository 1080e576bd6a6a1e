"""Task dependencies as Azure Batch applies them (jobs with usesTaskDependencies): pure rules.

A task with ``dependsOn`` (``taskIds`` and ``taskIdRanges``, ranges meaning the ids
``str(start)`` .. ``str(end)``) is not scheduled until every task it depends on completed in a
way that satisfies dependents: success does, a failure does not unless the failed task's
``exitConditions`` say ``dependencyAction: satisfy`` for it. Blocked dependents simply keep
waiting (Azure does not cancel them); a dependency that is reactivated and then succeeds
releases them. Dependencies on tasks not added yet wait for those tasks.
"""

from __future__ import annotations

from typing import Any

from openbatch.batch.domain.execution import exit_options

Doc = dict[str, Any]

MAX_RANGE_IDS = 100_000  # ids one task may wait for through ranges (beyond: the rest are ignored)


def dependency_keys(task: Doc) -> list[str]:
    """Lower-cased ids of the tasks ``task`` depends on (empty when it depends on none)."""
    deps = task.get("dependsOn")
    if not isinstance(deps, dict):
        return []
    keys = [str(i).lower() for i in deps.get("taskIds") or [] if isinstance(i, str)]
    budget = MAX_RANGE_IDS
    for r in deps.get("taskIdRanges") or []:
        start, end = (r.get("start"), r.get("end")) if isinstance(r, dict) else (None, None)
        if not isinstance(start, int) or not isinstance(end, int) or end < start:
            continue
        end = min(end, start + budget - 1)
        keys.extend(str(n) for n in range(start, end + 1))
        budget -= end - start + 1
        if budget <= 0:
            break
    own = str(task.get("id", "")).lower()
    return [k for k in dict.fromkeys(keys) if k != own]


def satisfies(dep: Doc | None) -> bool:
    """Whether the task ``dep`` (None: not added yet) lets the tasks depending on it run."""
    if dep is None or dep.get("state") != "completed":
        return False
    info = dep.get("executionInfo") or {}
    if info.get("result") == "success":
        options = exit_options(dep, exit_code=0, preprocessing=False, upload_failed=False)
        return (options or {}).get("dependencyAction", "satisfy") != "block"
    failure = info.get("failureInfo") or {}
    code = str(failure.get("code") or "")
    options = exit_options(dep, exit_code=info.get("exitCode"), preprocessing=not isinstance(info.get("exitCode"), int)
                           and not code.startswith("FileUpload"), upload_failed=code.startswith("FileUpload"))
    return (options or {}).get("dependencyAction") == "satisfy"
