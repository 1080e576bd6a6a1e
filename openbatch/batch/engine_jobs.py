"""The engine's job side: job states the engine completes, job prep/release tasks, job actions.

The API moves a job to terminating / deleting / disabling / enabling; the engine finishes the
move: running tasks are ended (terminate, delete) or requeued / ended / left alone (disable:
requeue | terminate | wait), the job release task runs on every node that ran the job
preparation task, then terminating -> completed, deleting -> gone (tasks purged), disabling ->
disabled, enabling -> active. Active tasks of a terminated job stay active, as on Azure ("any
remaining active tasks will not be scheduled"). The engine itself terminates a job when all its
tasks completed (onAllTasksComplete: terminatejob), when a task failure says so (onTaskFailure:
performexitoptionsjobaction + exitConditions) and when the job's maxWallClockTime expires.

Job preparation and release status lives in the job document under ``_prepRelease``:
``{node_id: {"poolId", "nodeId", "nodeUrl", "jobPreparationTaskExecutionInfo": {...},
"jobReleaseTaskExecutionInfo": {...}}}`` — the wire shape of one status entry per node.
"""

from __future__ import annotations

import asyncio
import logging

from openbatch.batch.domain import applications, states
from openbatch.batch.domain import execution as ex
from openbatch.batch.domain import instructions as ins
from openbatch.batch.domain.common import now_iso, parse_iso, touch
from openbatch.batch.engine_containers import containerize
from openbatch.batch.engine_core import Doc, EngineCore, JobRt, NodeRt, Run, key_of
from openbatch.common import clock
from openbatch.compute.base import JOB_PREPARATION, JOB_RELEASE, RunOutcome, RunSpec

log = logging.getLogger("openbatch.engine")

_J = states.JobState
RELEASE_WALL_CLOCK = 15 * 60.0


class EngineJobs(EngineCore):
    """Jobs (mixed into Engine)."""

    # --- runtime objects -----------------------------------------------------------------------

    def job_rt(self, account: str, job_id: str) -> JobRt | None:
        """The job's runtime, created from the store when first needed; None if it does not exist."""
        key = key_of(account, job_id)
        job = self.jobs.get(key)
        if job is not None:
            return job
        doc = self.store.get("job", account, job_id)
        if doc is None or doc.get("state") in (_J.COMPLETED.value,):
            return None
        return self._adopt_job(account, doc)

    def _adopt_job(self, account: str, doc: Doc) -> JobRt:
        key = key_of(account, str(doc["id"]))
        job = self.jobs.get(key)
        pool_id = (doc.get("poolInfo") or {}).get("poolId") or (doc.get("executionInfo") or {}).get("poolId")
        pool = key_of(account, str(pool_id)) if pool_id else None
        priority = doc.get("priority") or 0
        max_parallel = doc.get("maxParallelTasks")
        sched = self.scheduler.set_job(key, pool, priority=int(priority),
                                       max_parallel=max_parallel if isinstance(max_parallel, int) else -1,
                                       active=doc.get("state") == _J.ACTIVE.value)
        if job is None:
            job = self.jobs[key] = JobRt(account, key, doc, sched)
        job.doc = doc
        self._arm_wall_clock(job)
        return job

    # --- hooks: jobs ---------------------------------------------------------------------------

    def job_changed(self, account: str, job: Doc) -> None:
        state = job.get("state")
        if state == _J.COMPLETED.value and key_of(account, str(job["id"])) not in self.jobs:
            return
        jrt = self._adopt_job(account, job)
        if state in (_J.TERMINATING.value, _J.DELETING.value):
            self.end_job(jrt, str((job.get("executionInfo") or {}).get("terminateReason") or ex.USER_TERMINATE))
        elif state == _J.DISABLING.value:
            self.loop.call_soon(self._disable_default, jrt)
        elif state == _J.ENABLING.value:
            states.JOB.apply(job, _J.ACTIVE, states.Context(now_iso()))
            self.save_entity("job", account, job)
            jrt.sched.active = True
            self.kick()
        elif state == _J.ACTIVE.value:
            # next iteration: a job added with its Job Manager task hears of that task right after this
            self.loop.call_soon(self.check_all_complete, jrt)
        self.kick(jrt.sched.pool)

    def _disable_default(self, job: JobRt) -> None:
        if job.disabling is None and job.doc.get("state") == _J.DISABLING.value:
            self.disable_job(job, "requeue")

    def perform(self, account: str, instructions: list[ins.Instruction]) -> None:
        for instruction in instructions:
            try:
                self._perform(account, instruction)
            except Exception:
                log.exception("performing %r failed", instruction)

    def _perform(self, account: str, instruction: ins.Instruction) -> None:
        if isinstance(instruction, ins.KillTask):
            job = self.job_rt(account, instruction.job_id)
            if job is not None:
                self.kill_task(job.key, instruction.task_id.lower(), "terminate")
        elif isinstance(instruction, ins.StopJobTasks | ins.RunJobRelease | ins.PurgeJob):
            job = self.job_rt(account, instruction.job_id)
            if job is not None:
                reason = instruction.reason if isinstance(instruction, ins.StopJobTasks) else ex.USER_TERMINATE
                self.end_job(job, reason)
        elif isinstance(instruction, ins.DisableJobTasks):
            job = self.job_rt(account, instruction.job_id)
            if job is not None:
                self.disable_job(job, instruction.option)
        elif isinstance(instruction, ins.EndScheduleJobs):
            self.end_schedule_jobs(account, instruction)
        else:
            self.perform_node(account, instruction)

    # --- completion rules ----------------------------------------------------------------------

    def job_task_completed(self, job: JobRt, doc: Doc, outcome: RunOutcome | None, now: str) -> None:
        if self.jobs.get(job.key) is not job:
            return
        manager = doc.get("_jobManager")
        if (outcome is not None and isinstance(manager, dict) and manager.get("killJobOnCompletion", True)
                and job.doc.get("state") == _J.ACTIVE.value):
            self.terminate_job(job, ex.JOB_MANAGER_COMPLETE)
            return
        if outcome is not None and job.doc.get("state") == _J.ACTIVE.value:
            action = ex.job_action(job.doc, doc, succeeded=outcome.succeeded, exit_code=outcome.exit_code,
                                   preprocessing=outcome.preprocessing, upload_failed=outcome.upload_failed)
            if action == "terminate":
                self.terminate_job(job, ex.TASK_FAILED)
                return
            if action == "disable":
                self._engine_disable(job)
        self.check_all_complete(job)

    def check_all_complete(self, job: JobRt) -> None:
        if (self.jobs.get(job.key) is job and not job.tasks and job.doc.get("onAllTasksComplete") == "terminatejob"
                and job.doc.get("state") == _J.ACTIVE.value):
            self.terminate_job(job, ex.ALL_TASKS_COMPLETE)

    def terminate_job(self, job: JobRt, reason: str) -> None:
        """The engine's own terminate (all tasks complete, task failure, wall clock)."""
        doc = job.doc
        if not states.JOB.allowed(doc, _J.TERMINATING):
            return
        now = now_iso()
        states.JOB.apply(doc, _J.TERMINATING, states.Context(now, reason=reason))
        doc.setdefault("executionInfo", {})["terminateReason"] = reason
        touch(doc, now)
        self.save_entity("job", job.account, doc)
        self.kick()
        self.end_job(job, reason)

    def _engine_disable(self, job: JobRt) -> None:
        doc = job.doc
        if not states.JOB.allowed(doc, _J.DISABLING):
            return
        now = now_iso()
        states.JOB.apply(doc, _J.DISABLING, states.Context(now, details={"disableTasks": "requeue"}))
        touch(doc, now)
        self.save_entity("job", job.account, doc)
        self.disable_job(job, "requeue")

    def _arm_wall_clock(self, job: JobRt) -> None:
        if job.timer is not None:
            job.timer.cancel()
            job.timer = None
        limit = ex.seconds((job.doc.get("constraints") or {}).get("maxWallClockTime"))
        created = job.doc.get("creationTime")
        if limit is None or not created or job.doc.get("state") in (_J.COMPLETED.value, _J.DELETING.value):
            return
        try:
            elapsed = (parse_iso(now_iso()) - parse_iso(str(created))).total_seconds()
        except ValueError:
            return
        job.timer = clock.SERVICE.call_later(max(0.0, limit - elapsed), lambda: self._wall_clock_expired(job))

    def _wall_clock_expired(self, job: JobRt) -> None:
        job.timer = None
        if self.jobs.get(job.key) is job and job.doc.get("state") not in (_J.COMPLETED.value, _J.DELETING.value):
            self.terminate_job(job, ex.MAX_WALL_CLOCK_EXPIRY)

    # --- ending a job (terminate, delete) ------------------------------------------------------

    def end_job(self, job: JobRt, reason: str) -> None:
        job.sched.active = False
        if job.ending is None or job.ending.done():
            job.ending = self.spawn(self._end_job(job, reason), f"end job {job.key}")

    def _job_runs(self, job: JobRt) -> list[Run]:
        return [r for (jk, _), r in self.runs.items() if jk == job.key]

    async def _end_job(self, job: JobRt, reason: str) -> None:
        await asyncio.sleep(0)  # the rest of the API's instructions arrive first
        runs = self._job_runs(job)
        for run in runs:
            if run.finished is None:
                run.finished = self.new_future()
            self.stop_task(run, "jobstop")
        await asyncio.gather(*(r.finished for r in runs if r.finished is not None))
        await self._run_releases(job)
        if job.timer is not None:
            job.timer.cancel()
            job.timer = None
        if job.doc.get("state") == _J.DELETING.value:
            await self.deletion_passage(str(job.doc.get("stateTransitionTime") or now_iso()))
            self._purge(job)
        elif job.doc.get("state") == _J.TERMINATING.value:
            now = now_iso()
            states.JOB.apply(job.doc, _J.COMPLETED, states.Context(now, reason=reason))
            info = job.doc.setdefault("executionInfo", {})
            info["endTime"] = now
            info.setdefault("terminateReason", reason)
            touch(job.doc, now)
            self.save_entity("job", job.account, job.doc)
            self._drop_job(job)
            self.job_ended(job.account, job.doc)
        self.kick()

    async def _run_releases(self, job: JobRt) -> None:
        # Prep tasks still running are stopped first; then the release task runs where prep ran.
        for node in self.nodes.values():
            run = node.runs.get(f"{JOB_PREPARATION}:{job.key[1]}")
            if run is not None:
                run.stop = "jobstop"
                self.compute.kill(node.node_id, run.key)
        if not job.doc.get("jobReleaseTask"):
            return
        table = job.doc.get("_prepRelease") or {}
        ran = [n for n, status in table.items() if "jobReleaseTaskExecutionInfo" not in status and n in self.nodes]
        releases = [self.spawn(self.run_job_release(self.nodes[n], job)) for n in ran]
        await asyncio.gather(*releases, return_exceptions=True)

    def _drop_job(self, job: JobRt) -> None:
        for qt in list(job.tasks.values()):
            self.forget_task(job, qt)
        self.scheduler.remove_job(job.key)
        for node in self.nodes.values():
            node.prepared.pop(job.key, None)
            node.waiting.pop(job.key, None)
        if self.jobs.get(job.key) is job:
            del self.jobs[job.key]

    def _purge(self, job: JobRt) -> None:
        node_ids = [n.node_id for n in self.nodes.values() if n.pool == job.sched.pool]
        if node_ids:
            self.spawn(self._remove_job_dirs(node_ids, job.job_id), f"remove dirs of job {job.key}")
        self.store.delete_job_tasks(job.account, job.key[1])
        self.store.delete("job", job.account, job.key[1])
        states.JOB.forget(job.job_id)
        self._drop_job(job)
        self.job_ended(job.account, job.doc)

    async def _remove_job_dirs(self, node_ids: list[str], job_id: str) -> None:
        for node_id in node_ids:
            try:
                await self.compute.remove_job_dir(node_id, job_id)
            except OSError as exc:
                log.warning("removing the directory of job %s on %s failed: %s", job_id, node_id, exc)

    # --- disable -------------------------------------------------------------------------------

    def disable_job(self, job: JobRt, option: str) -> None:
        job.sched.active = False
        if job.disabling is None or job.disabling.done():
            job.disabling = self.spawn(self._disable(job, option.lower()), f"disable job {job.key}")

    async def _disable(self, job: JobRt, option: str) -> None:
        runs = self._job_runs(job)
        for run in runs:
            if run.finished is None:
                run.finished = self.new_future()
            if option == "requeue":
                self.stop_task(run, "requeue")
            elif option == "terminate":
                self.stop_task(run, "terminate")
        await asyncio.gather(*(r.finished for r in runs if r.finished is not None))
        if job.doc.get("state") == _J.DISABLING.value:
            states.JOB.apply(job.doc, _J.DISABLED, states.Context(now_iso()))
            self.save_entity("job", job.account, job.doc)
        self.kick()

    # --- job preparation and release tasks -----------------------------------------------------

    def start_job_prep(self, node: NodeRt, job: JobRt) -> None:
        self.spawn(self.run_job_prep(node, job), f"jobprep {job.key} {node.node_id}")

    def forget_node_jobs(self, node: NodeRt, reimage: bool) -> None:
        """After reboot/reimage: job prep tasks rerun unless rerunOnNodeRebootAfterSuccess is false."""
        for job_key, status in list(node.prepared.items()):
            job = self.jobs.get(job_key)
            prep = (job.doc.get("jobPreparationTask") if job else None) or {}
            keep = status == "success" and not prep.get("rerunOnNodeRebootAfterSuccess", True)
            if reimage or (not keep and status != "failed"):
                node.prepared.pop(job_key, None)
            if reimage and job is not None:
                self.scheduler.exclude_node(job_key, node.node_id, False)
        node.waiting.clear()

    def _status(self, job: JobRt, node: NodeRt) -> Doc:
        table = job.doc.setdefault("_prepRelease", {})
        entry: Doc = table.setdefault(node.node_id, {"poolId": node.pool_id, "nodeId": node.node_id,
                                                     "nodeUrl": node.doc.get("url", "")})
        return entry

    def _special_spec(self, kind: str, node: NodeRt, job: JobRt, task: Doc) -> RunSpec:
        pool = self.pools.get(node.pool)
        level, identity = ex.elevation_of(task.get("userIdentity"), (pool.doc if pool else {}).get("userAccounts"))
        default_id = "jobpreparation" if kind == JOB_PREPARATION else "jobrelease"
        wall = ex.seconds((task.get("constraints") or {}).get("maxWallClockTime"))
        if kind == JOB_RELEASE:
            wall = ex.seconds(task.get("maxWallClockTime")) or RELEASE_WALL_CLOCK
        packages, bad_package = applications.run_packages(self.ctx, node.account, pool.doc if pool else None)
        return containerize(RunSpec(
            kind=kind, key=f"{kind}:{job.key[1]}", account=node.account, pool_id=node.pool_id, node_id=node.node_id,
            command_line=str(task.get("commandLine", "")), job_id=job.job_id,
            task_id=str(task.get("id") or default_id), resource_files=task.get("resourceFiles") or [],
            environment=ex.environment(ex.node_environment(self.ctx, node.account, node.pool_id),
                                       job.doc.get("commonEnvironmentSettings"), task.get("environmentSettings")),
            elevation=level, user_identity=identity, max_wall_clock=wall,
            is_dedicated=bool(node.doc.get("isDedicated", True)),
            job_prep_id=str((job.doc.get("jobPreparationTask") or {}).get("id") or "jobpreparation")
            if kind == JOB_RELEASE else "",
            refusal=ex.container_refusal(task, pool.doc if pool else {}) or bad_package, app_packages=packages,
        ), task, pool.doc if pool else {})

    def _dir_info(self, node: NodeRt, job: JobRt, task: Doc, default_id: str) -> Doc:
        rel = self.compute.task_dir(job.job_id, str(task.get("id") or default_id))
        return {"state": "running", "startTime": now_iso(), "taskRootDirectory": rel,
                "taskRootDirectoryUrl": f"{node.doc.get('url', '')}/files/{rel}"}

    async def _run_special(self, run: Run, info: Doc, spec_doc: Doc | None) -> RunOutcome | None:
        """Run a job prep/release task (retried per ``spec_doc``); None if stopped or the node is gone."""
        try:
            while True:
                outcome = await self.attempt(run)
                if outcome is None:
                    return None
                now = now_iso()
                if spec_doc is not None and ex.should_retry(
                        info, spec_doc, exit_code=outcome.exit_code, failed=not outcome.succeeded,
                        preprocessing=outcome.preprocessing, upload_failed=outcome.upload_failed,
                        timed_out=outcome.timed_out, killed=outcome.killed):
                    ex.record_retry(info, now)
                    continue
                info["state"] = "completed"
                ex.record_result(info, now=now, exit_code=outcome.exit_code, failure_info=outcome.failure)
                return outcome
        finally:
            run.done()

    async def run_job_prep(self, node: NodeRt, job: JobRt) -> None:
        prep = job.doc.get("jobPreparationTask") or {}
        info = self._dir_info(node, job, prep, "jobpreparation")
        info["retryCount"] = 0
        status = self._status(job, node)
        status["jobPreparationTaskExecutionInfo"] = info
        status.pop("jobReleaseTaskExecutionInfo", None)
        self.save_entity("job", job.account, job.doc)
        self.kick()
        run = Run(JOB_PREPARATION, node, f"{JOB_PREPARATION}:{job.key[1]}", job=job.key,
                  finished=self.new_future())
        run.spec = self._special_spec(JOB_PREPARATION, node, job, prep)
        outcome = await self._run_special(run, info, prep)
        if self.jobs.get(job.key) is job:
            self.save_entity("job", job.account, job.doc)
        ok = outcome is not None and outcome.succeeded
        if outcome is None:
            node.prepared.pop(job.key, None)
        else:
            node.prepared[job.key] = "success" if ok else "failed"
        self._prep_done(node, job, ok or not prep.get("waitForSuccess", True), stopped=outcome is None)

    def _prep_done(self, node: NodeRt, job: JobRt, go: bool, *, stopped: bool) -> None:
        waiters = node.waiting.pop(job.key, [])
        now = now_iso()
        if not go and not stopped:
            self.scheduler.exclude_node(job.key, node.node_id)
        for run in waiters:
            doc = run.doc
            if doc is None or run.stop or node.runs.get(run.key) is not run:
                continue
            if go:
                states.TASK.apply(doc, states.TaskState.RUNNING, states.Context(now, details={"jobId": job.job_id}))
                ex.start_running(doc["executionInfo"], now)
                touch(doc, now)
                self.save_task(job.account, job.key[1], doc)
                self._starts.append(run)
            else:
                run.stop = "requeue" if stopped else "prepfailed"
                self.finished(run, None)
        self.kick(node.pool)

    async def run_job_release(self, node: NodeRt, job: JobRt) -> None:
        release = job.doc.get("jobReleaseTask") or {}
        info = self._dir_info(node, job, release, "jobrelease")
        self._status(job, node)["jobReleaseTaskExecutionInfo"] = info
        self.save_entity("job", job.account, job.doc)
        self.kick()
        run = Run(JOB_RELEASE, node, f"{JOB_RELEASE}:{job.key[1]}", job=job.key, finished=self.new_future())
        run.spec = self._special_spec(JOB_RELEASE, node, job, release)
        outcome = await self._run_special(run, info, None)
        if outcome is None:
            info["state"] = "completed"
            ex.record_result(info, now=now_iso(), exit_code=None, failure_info=ex.failure(
                ex.SERVER_ERROR, "NodeUnavailable", "The node stopped before the job release task completed."))
        node.prepared.pop(job.key, None)
        if self.jobs.get(job.key) is job and self.store.get("job", job.account, job.key[1]) is job.doc:
            self.save_entity("job", job.account, job.doc)
        self.kick()
