"""The publish job's order of events: what its ``on_end`` records (audit log, change set) is there before any
client can see the job finished, "started" is recorded before the job's thread runs, and a failure to record
never leaves the job running or locked. (CI once read the audit log between the status and the record.)"""
import threading
import time

import pytest

from retriever.errors import RetrieverError
from retriever.http.workbench import PublishJob


def _wait_until_finished(job, seconds=10.0):
    deadline = time.monotonic() + seconds
    while job.status()["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.01)
    return job.status()


def _fails(stage):
    raise RetrieverError("语料坏了")


def test_the_job_reads_running_until_on_end_has_recorded_its_outcome(tmp_path):
    job, recorded, release = PublishJob(tmp_path), [], threading.Event()

    def on_end(outcome):
        release.wait(10)
        recorded.append(outcome["state"])

    job.start(_fails, on_end=on_end)
    time.sleep(0.2)  # the work has failed by now; on_end is held
    assert job.status()["state"] == "running" and recorded == []
    release.set()
    status = _wait_until_finished(job)
    assert status["state"] == "failed" and "语料坏了" in status["message"] and recorded == ["failed"]


def test_started_is_recorded_before_the_thread_runs_and_before_the_outcome(tmp_path):
    job, events = PublishJob(tmp_path), []
    job.start(lambda stage: events.append("work") or {"version": "v2"}, on_start=lambda: events.append("started"),
              on_end=lambda outcome: events.append(outcome["state"]))
    assert _wait_until_finished(job)["state"] == "done"
    assert events == ["started", "work", "done"]


def test_an_on_end_that_raises_still_ends_the_job_and_frees_it(tmp_path):
    job = PublishJob(tmp_path)

    def on_end(outcome):
        raise OSError("disk full")

    job.start(_fails, on_end=on_end)
    assert _wait_until_finished(job)["state"] == "failed"
    job.start(lambda stage: {"version": "v3"})  # not 409: the lock was released
    assert _wait_until_finished(job)["state"] == "done"


def test_an_on_start_that_raises_releases_the_lock_and_says_the_job_did_not_start(tmp_path):
    job, ran = PublishJob(tmp_path), []

    def on_start():
        raise OSError("audit log unwritable")

    with pytest.raises(OSError):
        job.start(lambda stage: ran.append(1) or {}, on_start=on_start)
    status = job.status()
    assert status["state"] == "failed" and "没有开始" in status["message"] and ran == []
    job.start(lambda stage: {"version": "v4"})
    assert _wait_until_finished(job)["state"] == "done"
