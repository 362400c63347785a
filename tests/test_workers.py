"""Every job trains in a worker process of its own, started with torchrun: a worker that dies
leaves the runner (the studio) working and the job resumable from its last checkpoint; a killed
studio leaves no worker behind and its job resumes at the next start; running out of memory in a
worker says what to lower. Real workers, real training of the tiny model."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from storage.db import Store
from tests.runner_helpers import free_port, poll, start_app, wait_for, word_dataset
from training.core.config import TuningConfig
from training.core.dataset import Dataset, Example
from training.jobs.runner import JobRequest, JobRunner
from training.jobs.worker import MEMORY_LIMIT_ENV

FAST = dict(batch_size=4, learning_rate=0.01, lora_rank=4, max_input_tokens=64,
            max_output_tokens=16, precision="fp32")


def request(version_id, base_model, **config) -> JobRequest:
    return JobRequest("Worker words", "", str(base_model), version_id,
                      TuningConfig(**{**FAST, **config}))


def worker_pids(job_id: str) -> list[int]:
    """Processes of the job's worker group (torchrun and its workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"training.jobs.worker" in command and job_id.encode() in command:
            found.append(int(entry.name))
    return found


def worker_of(job_id: str) -> int:
    """The worker process itself (not its launcher)."""
    for pid in worker_pids(job_id):
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"torch.distributed.run" not in command:
            return pid
    return 0


def past_a_checkpoint(store, job_id: str) -> None:
    """Wait until the job is two steps past its first checkpoint: mid-epoch."""
    wait_for(lambda: (j := store.get_job(job_id)).checkpoint_step
             and j.completed_steps >= j.checkpoint_step + 2, timeout_s=120)


@pytest.fixture
def store(data_dir):
    with Store(data_dir) as store:
        yield store


def test_a_killed_worker_fails_the_job_with_the_cause_and_resume_finishes_it(
        store, data_dir, tiny_model_dir):
    version = store.save_dataset("words", word_dataset(40))
    runner = JobRunner(store, data_dir, poll_interval_s=0.05)
    runner.start()
    try:
        job = runner.submit(request(version.id, tiny_model_dir, epochs=12))
        past_a_checkpoint(store, job.id)
        os.kill(wait_for(lambda: worker_of(job.id)), signal.SIGKILL)  # mid-epoch
        failed = runner.wait(job.id, timeout_s=60)
        assert (failed.state, failed.gemini_state) == ("failed", "FAILED")
        assert failed.error.startswith("The training process was killed (SIGKILL) before it "
                                       "finished")
        assert "Resume the job to continue from its last checkpoint" in failed.error
        assert wait_for(lambda: not worker_pids(job.id), timeout_s=30)

        resumed = runner.resume(job.id)
        assert resumed.state == "queued"
        done = runner.wait(job.id, timeout_s=180)
        assert done.state == "succeeded", done.error
        assert done.completed_steps == done.total_steps == 120
        lines = [line.line for line in store.log_lines(job.id)]
        assert any(line.startswith("Resumed from the epoch") for line in lines), lines
    finally:
        runner.stop()


def test_a_killed_studio_leaves_no_worker_and_its_job_resumes_at_the_next_start(
        tmp_path, tiny_model_dir):
    data_dir = tmp_path / "data"
    with Store(data_dir) as store:
        version = store.save_dataset("words", word_dataset(40))
        job = JobRunner(store, data_dir).submit(request(version.id, tiny_model_dir, epochs=12))

    def studio():
        return start_app(["--port", str(free_port()), "--data-dir", str(data_dir)],
                         tmp_path / "studio.log")

    process = studio()
    try:
        with Store(data_dir) as store:
            poll(lambda: (j := store.get_job(job.id)).checkpoint_step
                 and j.completed_steps >= j.checkpoint_step + 2, timeout_s=180, process=process,
                 poll_s=0.1)
            assert worker_pids(job.id)
            process.kill()  # SIGKILL: no clean-up in the studio
            process.wait(timeout=30)
            assert wait_for(lambda: not worker_pids(job.id), timeout_s=15)
            stopped_at = store.get_job(job.id).completed_steps
            time.sleep(1.0)
            assert store.get_job(job.id).completed_steps == stopped_at  # nobody trains it

            process = studio()
            poll(lambda: store.get_job(job.id).state == "succeeded", timeout_s=240,
                 process=process, poll_s=0.2)
            lines = [line.line for line in store.log_lines(job.id)]
            assert any(line.startswith("The studio stopped while this job was running; resuming "
                                       "from the epoch") for line in lines), lines
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_worker_out_of_memory_says_what_to_lower(store, data_dir, tiny_model_dir, monkeypatch):
    """The worker may use 300 MB more than its libraries; a batch of 40 answers of 256 tokens
    needs gigabytes of logits."""
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "300")
    words = word_dataset(40)
    long = Dataset(words.template, tuple(Example(ex.fields, " ".join([ex.output] * 120), ex.source)
                                         for ex in words.examples))
    version = store.save_dataset("long words", long)
    runner = JobRunner(store, data_dir, poll_interval_s=0.05)
    runner.start()
    try:
        job = runner.submit(request(version.id, tiny_model_dir, epochs=1, batch_size=40,
                                    max_output_tokens=256))
        failed = runner.wait(job.id, timeout_s=120)
    finally:
        runner.stop()
    assert failed.state == "failed"
    assert failed.error.startswith("Training ran out of memory with batch size 40")
    assert "lower the batch size (e.g. to 20) or the maximum input tokens" in failed.error


def test_a_two_process_job_killed_mid_epoch_resumes_from_its_checkpoint(
        store, data_dir, tiny_model_dir):
    """Rank 0 reads the checkpoint and hands its state and adapter weights to rank 1."""
    version = store.save_dataset("words", word_dataset(40))
    runner = JobRunner(store, data_dir, poll_interval_s=0.05)
    runner.start()
    try:
        job = runner.submit(request(version.id, tiny_model_dir, epochs=8, processes=2))
        past_a_checkpoint(store, job.id)
        workers = [pid for pid in worker_pids(job.id)
                   if b"torch.distributed.run" not in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(workers) == 2
        os.kill(workers[-1], signal.SIGKILL)
        failed = runner.wait(job.id, timeout_s=60)
        assert failed.state == "failed"
        checkpoint_step = failed.checkpoint_step
        runner.resume(job.id)
        done = runner.wait(job.id, timeout_s=180)
        assert done.state == "succeeded", done.error
        steps = [m.step for m in store.metrics_after(job.id)]
        assert steps == list(range(1, 81)) and checkpoint_step < 80
        lines = [line.line for line in store.log_lines(job.id)]
        assert f"Resumed from the epoch {failed.checkpoint_epoch} checkpoint (step " \
               f"{checkpoint_step})." in lines
    finally:
        runner.stop()
