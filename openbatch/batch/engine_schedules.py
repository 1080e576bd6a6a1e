"""The engine's job schedule side: jobs made on time, schedules completed, auto pools deleted.

Each job schedule is looked at (``evaluate_schedule``) when the API changed it
(``schedule_changed``), when one of its jobs ended (``job_ended``), when its timer fires and once
at start (recovery): ``recurrence.plan`` says whether a job is due now, when to look again and
whether no job can follow. Timers wait on the service's clock (``clock.SERVICE.call_at``), so a
test server started with ``--test-clock`` runs hours of a schedule when the test advances it.

A job made here is an ordinary job (``jobs.store_new_job``): id ``{schedule}:job-N``, the
schedule's job specification as it is at that moment, ``_jobScheduleId``, its auto pool if the
specification asks for one. Terminating a schedule terminates its unfinished jobs (reason
``TerminateJobSchedule``) and completes it once they have completed; deleting it deletes every
job and then the schedule. Auto pools whose lifetime ended are deleted unless ``keepAlive``.

Everything here runs in the engine's loop and writes through the store like the other parts
(committed by the next pass). A schedule whose run was written but not committed before a crash
runs again at start, with the same job id, as the run is still due.
"""

from __future__ import annotations

import logging
from datetime import datetime

from openbatch.batch.domain import autopools, jobs, recurrence, schedules, states
from openbatch.batch.domain import errors as e
from openbatch.batch.domain import instructions as ins
from openbatch.batch.domain.common import Doc, iso, now_iso, touch
from openbatch.batch.engine_core import EngineCore, Key, key_of
from openbatch.common import clock

log = logging.getLogger("openbatch.engine")

_S = states.JobScheduleState
_J = states.JobState
TERMINATE_REASON = "TerminateJobSchedule"


class EngineSchedules(EngineCore):
    """Job schedules (mixed into Engine)."""

    def init_schedules(self) -> None:
        self.schedule_timers: dict[Key, clock.Timer] = {}

    # --- hooks ---------------------------------------------------------------------------------

    def schedule_changed(self, account: str, schedule: Doc) -> None:
        self.evaluate_schedule(account, str(schedule["id"]))

    def job_ended(self, account: str, job: Doc) -> None:
        """A job completed or was deleted: its auto pool's lifetime may be over, its schedule may go on."""
        pool_id = job.get("_autoPoolId")
        spec = autopools.spec_of(job) or {}
        if pool_id and not spec.get("keepAlive"):
            self._delete_auto_pool(account, str(pool_id))
        schedule_id = job.get("_jobScheduleId")
        if schedule_id:
            self.loop.call_soon(self.evaluate_schedule, account, str(schedule_id))

    def end_schedule_jobs(self, account: str, instruction: ins.EndScheduleJobs) -> None:
        """A schedule is terminating (terminate its unfinished jobs) or being deleted (delete all of them)."""
        doc = self.store.get("jobschedule", account, instruction.schedule_id)
        if doc is None:
            return
        self._disarm_schedule(key_of(account, str(doc["id"])))
        now = now_iso()
        for job in schedules.jobs_of(self.store, account, str(doc["id"])):
            if instruction.delete and job.get("state") != _J.DELETING.value:
                done = states.JOB.apply(job, _J.DELETING, states.Context(now, reason="JobDeleted"))
                touch(job, now)
                self.save_entity("job", account, job)
                self.perform(account, done)
            elif not instruction.delete and states.JOB.allowed(job, _J.TERMINATING):
                jrt = self.job_rt(account, str(job["id"]))
                if jrt is not None:
                    self.terminate_job(jrt, TERMINATE_REASON)
        self.kick()
        self.loop.call_soon(self.evaluate_schedule, account, str(doc["id"]))

    # --- looking at a schedule -----------------------------------------------------------------

    def evaluate_schedule(self, account: str, schedule_id: str) -> None:
        if self.stopping:
            return
        try:
            doc = self.store.get("jobschedule", account, schedule_id)
            self._disarm_schedule(key_of(account, schedule_id))
            if doc is None:
                return
            state = doc.get("state")
            if state == _S.ACTIVE.value:
                self._advance_schedule(account, doc)
            elif state in (_S.TERMINATING.value, _S.DELETING.value):
                self._finish_schedule(account, doc)
        except Exception:  # a bug here must not stop the loop: the next event looks again
            log.exception("engine: job schedule %s failed", schedule_id)

    def _unfinished(self, account: str, doc: Doc) -> list[Doc]:
        return [j for j in schedules.jobs_of(self.store, account, str(doc["id"]))
                if j.get("state") != _J.COMPLETED.value]

    def _advance_schedule(self, account: str, doc: Doc) -> None:
        now = clock.now()
        active = bool(self._unfinished(account, doc))
        plan = recurrence.plan(doc, now, active)
        if plan.run is not None:
            self._make_job(account, doc, plan.run)
            active = bool(self._unfinished(account, doc))
            plan = recurrence.plan(doc, now, active)
        info = doc.setdefault("executionInfo", {})
        if plan.over and not active:
            self._complete_schedule(account, doc)
            return
        if plan.next_run is not None:
            info["nextRunTime"] = iso(plan.next_run)
        else:
            info.pop("nextRunTime", None)
        self.save_entity("jobschedule", account, doc)
        self.kick()
        if plan.wake is not None:
            self._arm_schedule(account, str(doc["id"]), plan.wake.timestamp())

    def _finish_schedule(self, account: str, doc: Doc) -> None:
        """A terminating schedule completes, a deleting one disappears, once its jobs are done."""
        if doc["state"] == _S.TERMINATING.value:
            if not self._unfinished(account, doc):
                self._complete_schedule(account, doc)
            return
        if schedules.jobs_of(self.store, account, str(doc["id"])):
            return
        self._release_pool(account, doc, keep=self._keeps_pool(doc))
        self.store.delete("jobschedule", account, str(doc["id"]))
        states.JOB_SCHEDULE.forget(str(doc["id"]))
        self.kick()

    def _complete_schedule(self, account: str, doc: Doc) -> None:
        now = now_iso()
        states.JOB_SCHEDULE.apply(doc, _S.COMPLETED, states.Context(now))
        info = doc.setdefault("executionInfo", {})
        info.pop("nextRunTime", None)
        info["endTime"] = now
        self._release_pool(account, doc, keep=self._keeps_pool(doc))
        touch(doc, now)
        self.save_entity("jobschedule", account, doc)
        self.kick()

    # --- making a job --------------------------------------------------------------------------

    def _make_job(self, account: str, doc: Doc, due: datetime) -> None:
        number = int(doc.get("_jobCount") or 0) + 1
        while self.store.get("job", account, f"{doc['id']}:job-{number}") is not None:  # never reuse an id
            number += 1
        doc["_lastDue"] = iso(due)
        if not self._shares_pool(doc):
            self._release_pool(account, doc, keep=False)  # the specification no longer shares one
        now = now_iso()
        url = str(doc.get("url") or "")  # the host the schedule was added through, as for node URLs
        base = url.rsplit("/jobschedules/", 1)[0] if "/jobschedules/" in url else self.settings.batch_url
        try:
            job = schedules.run_job(doc, number, now, base)
            pool, manager = jobs.store_new_job(self.ctx, account, job, base, now, schedule=doc)
        except e.BatchError as exc:  # validated when stored: only a bug gets here; the run is lost
            log.error("job schedule %s: its job specification was refused: %s", doc["id"], exc.message)
            return
        doc["_jobCount"] = number
        doc.setdefault("executionInfo", {})["recentJob"] = {"id": job["id"], "url": job["url"]}
        self.save_entity("jobschedule", account, doc)
        jobs.announce_new_job(self, account, job, pool, manager)

    # --- auto pools ----------------------------------------------------------------------------

    @staticmethod
    def _shares_pool(doc: Doc) -> bool:
        """Whether the schedule's job specification shares one auto pool (jobschedule lifetime)."""
        spec = autopools.spec_of(doc.get("jobSpecification") or {})
        return spec is not None and spec.get("poolLifetimeOption") == "jobschedule"

    @staticmethod
    def _keeps_pool(doc: Doc) -> bool:
        """Whether the schedule's shared auto pool outlives it (keepAlive)."""
        spec = autopools.spec_of(doc.get("jobSpecification") or {})
        return spec is not None and bool(spec.get("keepAlive"))

    def _release_pool(self, account: str, doc: Doc, *, keep: bool) -> None:
        """The schedule's shared auto pool reached the end of its lifetime: delete it unless kept."""
        pool_id = doc.pop("_autoPoolId", None)
        if pool_id and not keep:
            self._delete_auto_pool(account, str(pool_id))

    def _delete_auto_pool(self, account: str, pool_id: str) -> None:
        pool, instructions = autopools.delete(self.store, account, pool_id, now_iso())
        if pool is not None:
            self.perform(account, instructions)
            self.pool_changed(account, pool)

    # --- timers --------------------------------------------------------------------------------

    def _arm_schedule(self, account: str, schedule_id: str, when: float) -> None:
        key = key_of(account, schedule_id)
        self._disarm_schedule(key)
        self.schedule_timers[key] = clock.SERVICE.call_at(when, lambda: self.evaluate_schedule(account, schedule_id))

    def _disarm_schedule(self, key: Key) -> None:
        timer = self.schedule_timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def stop_schedules(self) -> None:
        for key in list(self.schedule_timers):
            self._disarm_schedule(key)

    def resume_schedules(self) -> None:
        """At start: carry on terminating / deleting, and make the runs that fell due meanwhile."""
        for account, _, doc in list(self.store.every("jobschedule")):
            state = doc.get("state")
            if state in (_S.TERMINATING.value, _S.DELETING.value):
                self.end_schedule_jobs(account, ins.EndScheduleJobs(str(doc["id"]), state == _S.DELETING.value))
            else:
                self.evaluate_schedule(account, str(doc["id"]))
