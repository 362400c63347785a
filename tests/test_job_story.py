"""What My Library tells about a job: the log's story of the run, the time left from the first
steps, the label and loss of a cancelled job, and which actions its state offers."""

import re

import pytest

from storage.db import Store
from studio.library_tab import final_loss_text, progress_text, state_text
from tests.runner_helpers import wait_for, word_dataset
from training.core.config import TuningConfig
from training.core.progress import StepMetrics
from training.core.states import STATES, allowed_events
from training.jobs.runner import JobRequest, JobRunner

FAST = dict(batch_size=10, learning_rate=0.01, lora_rank=4, max_input_tokens=64,
            max_output_tokens=16, precision="fp32")


@pytest.fixture
def store(data_dir):
    with Store(data_dir) as store:
        yield store


def run_job(store, data_dir, tiny_model_dir, **config):
    version = store.save_dataset("words", word_dataset(60))
    runner = JobRunner(store, data_dir, poll_interval_s=0.05)
    runner.start()
    try:
        job = runner.submit(JobRequest("Words", "", str(tiny_model_dir), version.id,
                                       TuningConfig(**{**FAST, **config})))
        return runner.wait(job.id, timeout_s=120)
    finally:
        runner.stop()


def log_lines(store, job_id) -> list[str]:
    return [line.line for line in store.log_lines(job_id)]


def test_the_log_tells_the_story_of_the_run(store, data_dir, tiny_model_dir):
    job = run_job(store, data_dir, tiny_model_dir, epochs=2, eval_rows=20, eval_interval_steps=3)
    lines = log_lines(store, job.id)
    story = [re.sub(r"[\d.]+", "N", line.split(":")[0]) for line in lines]
    assert story == [
        "Training N examples on cpu (fpN)",  # 40 examples: 4 steps per epoch
        "Evaluation at step N (epoch N)",
        "Evaluation at step N (epoch N)",
        "Epoch N of N done at step N",
        "Checkpoint saved",
        "Evaluation at step N (epoch N)",
        "Evaluation at step N (epoch N)",
        "Epoch N of N done at step N",
        "Checkpoint saved",
        "Finished at step N",
    ]
    assert "Epoch 2 of 2 done at step 8: mean loss" in lines[7]
    assert re.search(r"eval loss \d+\.\d{4}, token accuracy \d+\.\d%", lines[1])


def test_early_stopping_is_told_in_the_log(store, data_dir, tiny_model_dir):
    job = run_job(store, data_dir, tiny_model_dir, epochs=6, eval_rows=20, eval_interval_steps=1,
                  early_stopping=True, early_stopping_patience=1, learning_rate=1e-9)
    assert job.state == "succeeded" and job.completed_steps < 24
    assert any(line.startswith("Stopped early at step") for line in log_lines(store, job.id))


def test_the_time_left_comes_from_the_latest_steps_not_the_time_since_the_start(store, data_dir):
    version = store.save_dataset("words", word_dataset())
    job = store.create_job(display_name="Slow start", description="", base_model="base",
                           dataset_version_id=version.id, config=TuningConfig(),
                           steps_per_epoch=10, total_steps=50)
    store.change_job_state(job.id, "start", owner="test")
    for step in (1, 2):
        store.record_step(job.id, StepMetrics(step, step / 10, 1.0, 0.5, 10, 0.001, 100, 6.0))
    # The job started long ago (loading the model took minutes): the pace is still 6 s a step.
    store.db.execute("UPDATE jobs SET started_at = '2020-01-01T00:00:00Z'")
    assert progress_text(store.get_job(job.id)) == "4% · 4m48s left"  # 48 steps x 6 s


def test_a_cancelled_job_reads_cancelled_and_has_no_final_loss(store, data_dir, tiny_model_dir):
    version = store.save_dataset("words", word_dataset(60))
    runner = JobRunner(store, data_dir, poll_interval_s=0.05)
    runner.start()
    try:
        job = runner.submit(JobRequest("Long", "", str(tiny_model_dir), version.id,
                                       TuningConfig(**{**FAST, "epochs": 500})))
        wait_for(lambda: store.get_job(job.id).checkpoint_epoch is not None, timeout_s=60)
        runner.cancel(job.id)
        job = runner.wait(job.id, timeout_s=60)
    finally:
        runner.stop()
    assert (job.state, job.partial, job.final_loss) == ("cancelled", True, None)
    assert state_text(job) == "Cancelled, partial model"
    assert final_loss_text(job) == ""


def test_actions_follow_the_state():
    offered = {state: sorted(allowed_events(state) & {"cancel", "resume"}) for state in STATES}
    assert offered == {
        "queued": ["cancel"], "running": ["cancel"], "cancelling": [], "cancelled": ["resume"],
        "succeeded": [], "failed": ["resume"], "interrupted": ["cancel", "resume"],
    }
