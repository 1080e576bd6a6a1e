"""The engine's task side: dispatch assignments, run tasks, record how they ended.

Hot path per task: the scheduler's assignment -> active->running (or preparing) through
``states.TASK`` -> one row in the pass's batch write -> the provider runs it -> the completion
is queued -> next pass: running->completed (or a retry in place on the same slot, or a requeue)
-> the slot goes back to the scheduler.
"""

from __future__ import annotations

import heapq
import logging
import time

from openbatch.batch.domain import applications, states
from openbatch.batch.domain import dependencies as deps
from openbatch.batch.domain import execution as ex
from openbatch.batch.domain.common import now_iso, touch
from openbatch.batch.engine_containers import containerize
from openbatch.batch.engine_core import MAX_HELD_DOCS, Doc, EngineCore, JobRt, Key, NodeRt, Run
from openbatch.batch.scheduler import QUEUED, QueuedTask
from openbatch.common.eventlog import EVENTS
from openbatch.compute.base import TASK, NodeGone, RunOutcome, RunSpec

log = logging.getLogger("openbatch.engine")

_T = states.TaskState
_RUNNING, _PREPARING, _ACTIVE, _COMPLETED = _T.RUNNING, _T.PREPARING, _T.ACTIVE, _T.COMPLETED
DEFAULT_RETENTION = 7 * 86400.0

# Why the engine stopped a task -> the failure message it completes with.
STOP_MESSAGES = {
    "terminate": ex.ENDED_BY_USER,
    "jobstop": ex.ENDED_BY_JOB,
    "nodeterminate": ex.ENDED_BY_NODE,
}
# Stops after which the task goes back to the queue (requeueCount + 1).
REQUEUE_STOPS = frozenset({"requeue", "restart", "remove"})


def _prep_id(job: Doc) -> str:
    prep = job.get("jobPreparationTask")
    return str(prep.get("id") or "jobpreparation") if isinstance(prep, dict) else ""


class EngineTasks(EngineCore):
    """Task execution (mixed into Engine)."""

    def init_tasks(self) -> None:
        self._retention: list[tuple[float, str, str, str]] = []

    # --- queueing ------------------------------------------------------------------------------

    def enqueue(self, job: JobRt, doc: Doc, hold: bool = True) -> QueuedTask:
        """Put an active task in the scheduler's index (new, requeued, reactivated or recovered);
        a task whose dependencies are not satisfied yet waits in ``job.blocked`` instead."""
        key = str(doc["id"]).lower()
        was_blocked = key in job.blocked
        qt = job.tasks.get(key)
        new = qt is None or qt.state != QUEUED
        if qt is None or new:
            slots = doc.get("requiredSlots")
            qt = QueuedTask(int(doc.get("_seq", 0)), job.key, key,
                            slots if isinstance(slots, int) and slots > 0 else 1)
            job.tasks[key] = qt
            if "multiInstanceSettings" in doc:
                self.queue_multi(job, qt, doc)
        self.hold(qt, doc if hold else None)
        if doc.get("dependsOn") and job.doc.get("usesTaskDependencies"):
            pending = self._pending_dependencies(job, key, doc)
            if pending:
                job.blocked[key] = pending
                return qt
            job.blocked.pop(key, None)
        if new or was_blocked:
            self.scheduler.push(qt)
        return qt

    def _pending_dependencies(self, job: JobRt, key: str, doc: Doc) -> set[str]:
        pending: set[str] = set()
        for dep in deps.dependency_keys(doc):
            if dep in job.tasks or not deps.satisfies(self.store.get_task(job.account, job.key[1], dep)):
                pending.add(dep)
                job.waiters.setdefault(dep, set()).add(key)
        return pending

    def dependency_done(self, job: JobRt, doc: Doc) -> None:
        """A task completed: release the tasks that waited only for it, if it satisfies them."""
        key = str(doc["id"]).lower()
        waiting = job.waiters.get(key)
        if not waiting or not deps.satisfies(doc):
            return  # blocked dependents keep waiting (a reactivation may still satisfy them)
        del job.waiters[key]
        for task_key in waiting:
            pending = job.blocked.get(task_key)
            if pending is None:
                continue
            pending.discard(key)
            if not pending:
                del job.blocked[task_key]
                qt = job.tasks.get(task_key)
                if qt is not None and qt.state == QUEUED:
                    self.scheduler.push(qt)
        self.kick(job.sched.pool)

    def hold(self, qt: QueuedTask, doc: Doc | None) -> None:
        if qt.payload is not None:
            self.held -= 1
        qt.payload = doc if doc is not None and self.held < MAX_HELD_DOCS else None
        if qt.payload is not None:
            self.held += 1

    def forget_task(self, job: JobRt, qt: QueuedTask) -> None:
        job.blocked.pop(qt.key, None)
        self.hold(qt, None)
        self.scheduler.drop(qt)
        if job.tasks.get(qt.key) is qt:
            del job.tasks[qt.key]

    # --- dispatch ------------------------------------------------------------------------------

    def dispatch(self, pool: Key, now: str) -> None:
        for assignment in self.scheduler.assign(pool):
            qt = assignment.task
            job = self.jobs.get(qt.job)
            node = self.nodes.get(assignment.node_id)
            doc = qt.payload if qt.payload is not None else self.store.get_task(qt.job[0], qt.job[1], qt.key)
            self.hold(qt, None)
            if job is None or node is None or doc is None or doc.get("state") != _ACTIVE.value:
                self.scheduler.release(qt)
                if job is not None and job.tasks.get(qt.key) is qt:
                    del job.tasks[qt.key]
                continue
            self._assign(job, node, qt, doc, now)

    def _assign(self, job: JobRt, node: NodeRt, qt: QueuedTask, doc: Doc, now: str) -> None:
        run = Run(TASK, node, f"task:{job.key[1]}/{qt.key}", qt=qt, job=job.key, doc=doc)
        prep = job.doc.get("jobPreparationTask")
        to = _RUNNING
        if prep:
            status = node.prepared.get(job.key)
            if status is None:
                node.prepared[job.key] = status = "running"
                self.start_job_prep(node, job)
            if status == "running" and prep.get("waitForSuccess", True):
                to = _PREPARING
                node.waiting.setdefault(job.key, []).append(run)
        states.TASK.apply(doc, to, states.Context(now, details={"jobId": job.job_id}))
        info = doc.get("executionInfo")
        if info is None:
            info = doc["executionInfo"] = {"retryCount": 0, "requeueCount": 0}
        if to is _RUNNING:
            ex.start_running(info, now)
        doc["nodeInfo"] = self.node_info(node, job.job_id, str(doc["id"]))
        touch(doc, now)
        self.save_task(job.account, job.key[1], doc)
        self.runs[(job.key, qt.key)] = run
        node.runs[run.key] = run
        if qt.instances:
            self.assign_multi(run, qt)
        node.tasks += 1
        node.slots_used += qt.slots
        node.doc["totalTasksRun"] = int(node.doc.get("totalTasksRun", 0)) + 1
        node.recent.append({"taskUrl": doc.get("url", ""), "jobId": job.job_id, "taskId": doc["id"],
                            "taskState": doc["state"]})
        self._node_counts(node)
        if to is _RUNNING:
            self._starts.append(run)

    def node_info(self, node: NodeRt, job_id: str, task_id: str) -> Doc:
        rel = self.compute.task_dir(job_id, task_id)
        url = str(node.doc.get("url", ""))
        return {"affinityId": node.doc.get("affinityId", ""), "nodeUrl": url, "poolId": node.pool_id,
                "nodeId": node.node_id, "taskRootDirectory": rel, "taskRootDirectoryUrl": f"{url}/files/{rel}"}

    def _node_counts(self, node: NodeRt) -> None:
        nd = node.doc
        nd["runningTasksCount"] = node.tasks
        nd["runningTaskSlotsCount"] = node.slots_used
        nd["recentTasks"] = list(node.recent)
        self.settle_node(node)
        self.save_node(node)

    # --- running -------------------------------------------------------------------------------

    def start_run(self, run: Run) -> None:
        if run.node.runs.get(run.key) is not run:
            return
        if run.stop:
            self.finished(run, None)
            return
        if run.spec is None:
            run.spec = self._task_spec(run)
            if run.doc is not None and "containerSettings" in run.doc:
                pool = self.pools.get(run.node.pool)
                run.spec = containerize(run.spec, run.doc, pool.doc if pool else {})
        run.active = True
        run.handle = self.loop.create_task(self._execute(run))

    def _task_spec(self, run: Run) -> RunSpec:
        doc, node = run.doc or {}, run.node
        job = self.jobs.get(run.job) if run.job else None
        job_doc = job.doc if job else {}
        pool = self.pools.get(node.pool)
        level, identity = ex.elevation_of(doc.get("userIdentity"), (pool.doc if pool else {}).get("userAccounts"))
        packages, bad_package = applications.run_packages(self.ctx, node.account, pool.doc if pool else None,
                                                          doc.get("applicationPackageReferences"))
        return RunSpec(
            kind=TASK, key=run.key, account=node.account, pool_id=node.pool_id, node_id=node.node_id,
            command_line=str(doc.get("commandLine", "")), job_id=str(job_doc.get("id", "")),
            task_id=str(doc["id"]), resource_files=doc.get("resourceFiles") or [],
            output_files=doc.get("outputFiles") or [],
            environment=ex.environment(ex.node_environment(self.ctx, node.account, node.pool_id),
                                       job_doc.get("commonEnvironmentSettings"), doc.get("environmentSettings")),
            elevation=level, user_identity=identity,
            max_wall_clock=ex.seconds((doc.get("constraints") or {}).get("maxWallClockTime")),
            is_dedicated=bool(node.doc.get("isDedicated", True)), job_prep_id=_prep_id(job_doc),
            refusal=ex.container_refusal(doc, pool.doc if pool else {}) or bad_package, app_packages=packages,
        )

    async def _execute(self, run: Run) -> None:
        assert run.spec is not None
        try:
            outcome: RunOutcome | None = await (self.execute_multi(run) if run.multi is not None
                                                else self.compute.run(run.spec))
        except NodeGone:
            outcome = None
        except Exception as exc:
            log.exception("running %s on %s failed", run.key, run.node.node_id)
            t = time.time()
            outcome = RunOutcome(None, t, t, preprocessing=True, failure=ex.failure(
                ex.SERVER_ERROR, "TaskFailedToStart", f"The task could not be started: {exc}"))
        run.active = False
        self.finished(run, outcome)

    # --- completion ----------------------------------------------------------------------------

    def run_finished(self, run: Run, outcome: RunOutcome | None, now: str) -> None:
        doc, qt = run.doc, run.qt
        if doc is None or qt is None or run.job is None:
            run.done()
            return
        if outcome is None and not run.stop:
            run.stop = "requeue"  # before the node's other runs are stopped, which must not include this one again
            self.node_unusable(run.node, "The node's directory is missing.")
        if not run.stop and outcome is not None and self._retry(run, outcome, now):
            return
        job = self.jobs.get(run.job)
        if run.stop in REQUEUE_STOPS:
            self._requeue(run, doc, now, count=True)
        elif run.stop == "prepfailed":
            self._requeue(run, doc, now, count=False)
        elif run.stop != "delete":
            self._complete(run, doc, outcome, now)
        self._release(run)
        if job is not None and (run.stop == "delete" or doc.get("state") == _COMPLETED.value):
            if job.tasks.get(qt.key) is qt:
                del job.tasks[qt.key]
            if run.stop == "delete":
                self.remove_task_dir(run.node.node_id, job.job_id, str(doc["id"]))
            else:
                self._retain(run.node, job.job_id, str(doc["id"]), doc)
                self.dependency_done(job, doc)
            self.job_task_completed(job, doc, None if run.stop else outcome, now)
        run.done()

    def _retry(self, run: Run, outcome: RunOutcome, now: str) -> bool:
        doc = run.doc
        assert doc is not None and run.job is not None
        info = doc["executionInfo"]
        if not ex.should_retry(info, doc, exit_code=outcome.exit_code, failed=not outcome.succeeded,
                               preprocessing=outcome.preprocessing, upload_failed=outcome.upload_failed,
                               timed_out=outcome.timed_out, killed=outcome.killed):
            return False
        ex.record_retry(info, now)
        touch(doc, now)
        self.save_task(run.node.account, run.job[1], doc)
        self._starts.append(run)
        return True

    def _complete(self, run: Run, doc: Doc, outcome: RunOutcome | None, now: str) -> None:
        assert run.job is not None
        info = doc.setdefault("executionInfo", {"retryCount": 0, "requeueCount": 0})
        message = STOP_MESSAGES.get(run.stop)
        code = outcome.exit_code if outcome is not None else None
        if doc.get("state") == _COMPLETED.value:  # ended through the API (terminate): keep what it said
            if code is not None and "exitCode" not in info:
                info["exitCode"] = code
            info.setdefault("endTime", now)
        else:
            states.TASK.apply(doc, _COMPLETED, states.Context(now, details={"jobId": self._job_id(run)}))
            failure_info = ex.ended(message) if message else (outcome.failure if outcome is not None else None)
            if failure_info is None and outcome is None:
                failure_info = ex.failure(ex.SERVER_ERROR, "TaskEnded", "The task ended before it ran.")
            ex.record_result(info, now=now, exit_code=code, failure_info=failure_info)
            EVENTS.task_completed(self._job_id(run), str(doc.get("id")), info.get("exitCode"), info.get("result"),
                                  (info.get("failureInfo") or {}).get("code"))
        if info.get("result") == "success":
            run.node.doc["totalTasksSucceeded"] = int(run.node.doc.get("totalTasksSucceeded", 0)) + 1
        touch(doc, now)
        self.save_task(run.node.account, run.job[1], doc)

    def _job_id(self, run: Run) -> str:
        job = self.jobs.get(run.job) if run.job else None
        return job.job_id if job else (run.job[1] if run.job else "")

    def _requeue(self, run: Run, doc: Doc, now: str, *, count: bool) -> None:
        """Back to active; ``count``: a requeue Azure reports (requeueCount + 1)."""
        assert run.job is not None and run.qt is not None
        if doc.get("state") == _COMPLETED.value:
            return
        states.TASK.apply(doc, _ACTIVE, states.Context(now, reason="requeued", details={"jobId": self._job_id(run)}))
        if count:
            ex.requeue(doc, now)
        else:
            doc.pop("nodeInfo", None)
        touch(doc, now)
        self.save_task(run.node.account, run.job[1], doc)
        job = self.jobs.get(run.job)
        if job is None:
            return
        self.scheduler.release(run.qt)
        qt = QueuedTask(run.qt.seq, job.key, run.qt.key, run.qt.slots, instances=run.qt.instances)
        job.tasks[qt.key] = qt
        self.hold(qt, doc)
        self.scheduler.push(qt)
        self.kick(job.sched.pool)

    def _release(self, run: Run) -> None:
        node = run.node
        if node.runs.get(run.key) is run:
            del node.runs[run.key]
        if run.qt is None:
            return
        if run.job is not None and self.runs.get((run.job, run.qt.key)) is run:
            del self.runs[(run.job, run.qt.key)]
        node.tasks = max(0, node.tasks - 1)
        node.slots_used = max(0, node.slots_used - run.qt.slots)
        self.scheduler.release(run.qt)
        if run.multi is not None:
            self.release_multi(run)
        if run.doc is not None:
            for entry in node.recent:
                if entry["taskId"] == run.doc["id"]:
                    entry["taskState"] = run.doc["state"]
                    entry["executionInfo"] = run.doc.get("executionInfo")
        self._node_counts(node)
        self.kick(node.pool)

    # --- stopping tasks from outside -----------------------------------------------------------

    def stop_task(self, run: Run, reason: str) -> None:
        """End a task the engine is running (or about to run, or holding in preparing) for ``reason``."""
        if run.stop:
            if reason == "delete":
                run.stop = reason  # already being ended: it is deleted rather than completed
            return
        run.stop = reason
        if run.active:
            if run.multi is not None:
                self.kill_multi(run)
            else:
                self.compute.kill(run.node.node_id, run.key)
            return
        if run in self._starts:
            return  # start_run sees the stop and finishes it
        for waiters in run.node.waiting.values():
            if run in waiters:
                waiters.remove(run)
        self.finished(run, None)

    def kill_task(self, job_key: Key, task_key: str, reason: str) -> bool:
        run = self.runs.get((job_key, task_key))
        if run is None:
            return False
        self.stop_task(run, reason)
        return True

    def remove_task_dir(self, node_id: str, job_id: str, task_id: str) -> None:
        if node_id not in self.nodes:
            return
        try:
            self.compute.remove_task_dir(node_id, job_id, task_id)
        except OSError as exc:
            log.warning("removing the directory of task %s/%s on %s failed: %s", job_id, task_id, node_id, exc)

    # --- retention -----------------------------------------------------------------------------

    def _retain(self, node: NodeRt, job_id: str, task_id: str, doc: Doc) -> None:
        keep = ex.seconds((doc.get("constraints") or {}).get("retentionTime"))
        if keep is None or keep >= DEFAULT_RETENTION:
            return  # the periodic sweep removes directories older than the default
        deadline = time.monotonic() + keep
        heapq.heappush(self._retention, (deadline, node.node_id, job_id, task_id))
        if self._retention[0][0] == deadline:
            self.loop.call_at(self.loop.time() + keep, self._expire)

    def _expire(self) -> None:
        now = time.monotonic()
        while self._retention and self._retention[0][0] <= now + 0.01:
            _, node_id, job_id, task_id = heapq.heappop(self._retention)
            self.remove_task_dir(node_id, job_id, task_id)
        if self._retention:
            self.loop.call_later(max(0.0, self._retention[0][0] - now), self._expire)

    # --- hooks: tasks --------------------------------------------------------------------------

    def tasks_added(self, account: str, job_id: str, tasks: list[Doc]) -> None:
        job = self.job_rt(account, job_id)
        if job is None:
            return
        for doc in tasks:
            if doc.get("state") == _ACTIVE.value:
                self.enqueue(job, dict(doc))
        if job.sched.active:
            self.kick(job.sched.pool)

    def task_changed(self, account: str, job_id: str, task: Doc) -> None:
        job = self.job_rt(account, job_id)
        if job is None:
            return
        key = str(task["id"]).lower()
        run = self.runs.get((job.key, key))
        qt = job.tasks.get(key)
        if task.get("_deleted"):
            self._task_deleted(job, run, qt, task)
        elif run is not None:
            self._adopt(run, task)
        elif task.get("state") == _ACTIVE.value:
            self.enqueue(job, {k: v for k, v in task.items() if k != "_deleted"})
            self.kick(job.sched.pool)
        elif qt is not None and task.get("state") == _COMPLETED.value:
            self.forget_task(job, qt)
            self.dependency_done(job, task)
            self.job_task_completed(job, task, None, now_iso())

    def _task_deleted(self, job: JobRt, run: Run | None, qt: QueuedTask | None, task: Doc) -> None:
        if run is not None:
            self.stop_task(run, "delete")
            return
        if qt is not None:
            self.forget_task(job, qt)
        node_id = (task.get("nodeInfo") or {}).get("nodeId")
        if node_id:
            self.remove_task_dir(str(node_id), job.job_id, str(task["id"]))
        if qt is not None:
            self.job_task_completed(job, task, None, now_iso())

    def _adopt(self, run: Run, task: Doc) -> None:
        """The API changed a task in flight: take its constraints; a completed one was terminated."""
        doc = run.doc
        if doc is None:
            return
        doc["constraints"] = task.get("constraints", doc.get("constraints"))
        if task.get("state") == _COMPLETED.value and doc.get("state") != _COMPLETED.value:
            for name in ("state", "stateTransitionTime", "previousState", "previousStateTransitionTime",
                         "executionInfo", "eTag", "lastModified"):
                if name in task:
                    doc[name] = task[name]
            self.stop_task(run, "terminate")
        else:
            doc["eTag"] = task.get("eTag", doc.get("eTag"))
            doc["lastModified"] = task.get("lastModified", doc.get("lastModified"))
