"""The job runner on a real SQLite file: the queue, cancel, failure and restart.

Behaviours that train use the real trainer on the tiny 2-layer model; queue bookkeeping that
does not concern training uses ``RecordingTrain`` (tests/runner_helpers.py).
"""

import contextlib
import json

import pytest

from storage.db import Store
from tests.runner_helpers import RecordingTrain, claim, wait_for, word_dataset
from training.core.config import TuningConfig
from training.core.dataset import Dataset
from training.core.errors import StudioError, TrainingError
from training.core.messages import LANGUAGE
from training.core.states import IllegalTransition
from training.jobs.runner import JobRequest, JobRunner, StopCheck

FAST = dict(batch_size=4, learning_rate=0.01, lora_rank=4, max_input_tokens=64,
            max_output_tokens=16, precision="fp32")
"""Tiny-model settings: 40 examples are 10 steps per epoch."""


@contextlib.contextmanager
def saying(language):
    token = LANGUAGE.set(language)
    try:
        yield
    finally:
        LANGUAGE.reset(token)


@pytest.fixture
def store(data_dir):
    with Store(data_dir) as store:
        yield store


@pytest.fixture
def version_id(store):
    return store.save_dataset("words", word_dataset(40)).id


@pytest.fixture
def runners():
    started = []
    yield started
    for runner in started:
        runner.stop()


def request(version_id, base_model, name="Reverser", **config) -> JobRequest:
    return JobRequest(name, "reverses words", str(base_model), version_id,
                      TuningConfig(**{**FAST, **config}))


def start(runners, store, data_dir, train_fn=None) -> JobRunner:
    runner = JobRunner(store, data_dir, train_fn, poll_interval_s=0.05)
    runner.start()
    runners.append(runner)
    return runner


def steps(store, job_id) -> list[int]:
    return [m.step for m in store.metrics_after(job_id)]


def log_text(store, job_id) -> str:
    return "\n".join(line.line for line in store.log_lines(job_id))


# ---- submitting -------------------------------------------------------------------------------

def test_submit_returns_before_training_with_a_queued_job(store, data_dir, version_id, tiny_model_dir, runners):
    runner = start(runners, store, data_dir)
    job = runner.submit(request(version_id, tiny_model_dir, epochs=1))
    assert (job.state, job.completed_steps) == ("queued", 0)  # it returned before training
    assert runner.wait(job.id, timeout_s=60).state == "succeeded"


@pytest.mark.parametrize("change, message", [
    (dict(dataset_version_id=999), "Dataset version 999 does not exist: choose a saved dataset version."),
    (dict(config=TuningConfig(epochs=0)), "Epochs is 0: use a whole number from 1 to 1000."),
    (dict(config=TuningConfig(eval_rows=25)), "Evaluation rows is 25 but the dataset has 40 "
     "examples: at least 20 must remain for training. Lower evaluation rows or add examples."),
    (dict(base_model="/no/such/model"), "The folder /no/such/model does not exist: choose a folder "
     "that holds a model saved with save_pretrained."),
    (dict(display_name=" "), "The display name is empty: type a name of 1 to 40 characters."),
])
def test_submit_refuses_what_cannot_train_and_names_it(store, data_dir, version_id, tiny_model_dir, change, message):
    runner = JobRunner(store, data_dir)
    fields = dict(display_name="x", description="", base_model=str(tiny_model_dir),
                  dataset_version_id=version_id, config=TuningConfig())
    with pytest.raises(StudioError) as caught:
        runner.submit(JobRequest(**{**fields, **change}))
    assert str(caught.value) == message
    assert store.list_jobs() == []


def test_submit_refuses_a_dataset_version_with_errors(store, data_dir, tiny_model_dir):
    small = store.save_dataset("small", Dataset(word_dataset(5).template, word_dataset(5).examples))
    with pytest.raises(StudioError) as caught:
        JobRunner(store, data_dir).submit(request(small.id, tiny_model_dir))
    assert str(caught.value) == (
        "The dataset 'small' version 1 has 1 error: fix it in the editor and save a new version. "
        "First: The dataset has 5 examples; tuning needs at least 20. Add 15 more.")


# ---- the queue --------------------------------------------------------------------------------

def test_jobs_run_one_at_a_time_first_in_first_out(store, data_dir, version_id, tiny_model_dir, runners):
    train = RecordingTrain()
    runner = JobRunner(store, data_dir, train, poll_interval_s=0.05)
    jobs = [runner.submit(request(version_id, tiny_model_dir, name=n, epochs=1)) for n in "abc"]
    runner.start()
    runners.append(runner)
    finished = [runner.wait(job.id, timeout_s=30) for job in jobs]
    assert [f.state for f in finished] == ["succeeded"] * 3
    assert [path.name for path in train.calls] == ["a", "b", "c"]
    assert [f.started_at for f in finished] == sorted(f.started_at for f in finished)


def test_cancelling_a_queued_job_cancels_it_at_once_and_it_never_trains(store, data_dir, version_id, tiny_model_dir):
    train = RecordingTrain()
    runner = JobRunner(store, data_dir, train)
    job = runner.submit(request(version_id, tiny_model_dir))
    cancelled = runner.cancel(job.id)
    assert (cancelled.state, cancelled.gemini_state) == ("cancelled", "FAILED")
    assert store.get_job(job.id).partial is False
    assert train.calls == []
    assert "before the first checkpoint: no model was kept" in log_text(store, job.id)


def test_a_running_job_cannot_be_deleted_until_cancelled(store, data_dir, version_id, tiny_model_dir, runners):
    train = RecordingTrain()
    train.hold.clear()
    runner = start(runners, store, data_dir, train)
    job = runner.submit(request(version_id, tiny_model_dir))
    wait_for(lambda: store.get_job(job.id).state == "running")
    with pytest.raises(StudioError) as caught:
        runner.delete(job.id)
    assert str(caught.value) == (
        f"The tuned model '{job.id}' is still training: cancel it first, then delete it.")
    runner.cancel(job.id)
    train.hold.set()
    runner.wait(job.id, timeout_s=30)
    runner.delete(job.id)
    assert store.list_jobs() == [] and not runner.job_dir(job.id).exists()


def test_tune_again_copies_the_job_with_the_changes(store, data_dir, version_id, tiny_model_dir):
    runner = JobRunner(store, data_dir)
    first = runner.submit(request(version_id, tiny_model_dir, epochs=5))
    again = runner.tune_again(first.id, epochs=2, description="fewer epochs")
    assert (again.id, again.display_name, again.description) == ("reverser-2", "Reverser", "fewer epochs")
    assert again.config == TuningConfig(**{**FAST, "epochs": 2})
    assert (again.base_model, again.dataset_version_id) == (first.base_model, first.dataset_version_id)


def test_a_finished_job_keeps_template_and_config_in_sqlite_and_the_base_model_in_its_folder(
        store, data_dir, version_id, tiny_model_dir, runners):
    runner = start(runners, store, data_dir, RecordingTrain())
    job = runner.wait(runner.submit(request(version_id, tiny_model_dir, epochs=1)).id, timeout_s=30)
    folder = runner.job_dir(job.id)
    assert store.get_dataset_version(job.dataset_version_id).dataset.template == word_dataset().template
    assert store.get_job(job.id).config == request(version_id, tiny_model_dir, epochs=1).config
    assert not (folder / "template.json").exists() and not (folder / "tuning_config.json").exists()
    assert json.loads((folder / "base_model.json").read_text())["kind"] == "local"
    assert job.path(data_dir, job.result_dir) == folder / "adapter"


def test_cancelling_a_running_job_stops_it_within_a_step_and_keeps_a_partial_model(store, data_dir, version_id, tiny_model_dir, runners):
    runner = start(runners, store, data_dir)
    job = runner.submit(request(version_id, tiny_model_dir, epochs=30))
    wait_for(lambda: (j := store.get_job(job.id)).checkpoint_step and j.completed_steps >= j.checkpoint_step + 2)
    assert runner.cancel(job.id).state == "cancelling"
    seen = store.get_job(job.id).completed_steps  # after the cancel: at most the step in flight follows
    done = runner.wait(job.id, timeout_s=30)
    assert (done.state, done.gemini_state, done.partial) == ("cancelled", "FAILED", True)
    assert done.completed_steps <= seen + 1 < done.total_steps
    adapter = done.path(data_dir, done.result_dir)
    assert adapter == runner.job_dir(job.id) / "checkpoints" / f"epoch-{done.checkpoint_epoch}" / "adapter"
    assert (adapter / "adapter_config.json").is_file()
    assert log_text(store, job.id).endswith(
        f"Cancelled at step {done.completed_steps}. The epoch {done.checkpoint_epoch} checkpoint "
        f"(step {done.checkpoint_step}) is kept as a partial model: it may behave unpredictably. "
        "Tune again with fewer epochs for a finished model.")


def test_a_cancel_written_by_another_process_stops_the_trainer_within_the_interval(store, data_dir, version_id, tiny_model_dir):
    job = JobRunner(store, data_dir).submit(request(version_id, tiny_model_dir))
    claim(store, "other process")
    should_stop = StopCheck(store, job.id, stop_now=lambda: False, interval_s=0.05)
    assert should_stop() is False
    store.change_job_state(job.id, "cancel")
    assert wait_for(should_stop, timeout_s=1)


# ---- failure ----------------------------------------------------------------------------------

def test_an_unexpected_error_fails_the_job_with_its_type_and_the_traceback_in_the_log(store, data_dir, version_id, tiny_model_dir, runners):
    runner = start(runners, store, data_dir, RecordingTrain(error=RuntimeError("disk on fire\nmore")))
    job = runner.wait(runner.submit(request(version_id, tiny_model_dir)).id, timeout_s=30)
    assert (job.state, job.gemini_state) == ("failed", "FAILED")
    assert job.error == ("Training failed (RuntimeError: disk on fire); the traceback is in the "
                         "job's log.")
    log = log_text(store, job.id)
    assert "Traceback (most recent call last)" in log and "RuntimeError: disk on fire" in log


def test_a_failure_is_kept_in_english_and_read_in_each_readers_language(store, data_dir, version_id, tiny_model_dir, runners):
    with saying("fr"):  # raised while another page's language was current: stored in English
        error = TrainingError.of("training.checkpoint_steps", folder="f", saved=3, now=4)
    runner = start(runners, store, data_dir, RecordingTrain(error=error))
    job = runner.wait(runner.submit(request(version_id, tiny_model_dir)).id, timeout_s=30)
    assert job.error == ("The checkpoint f was made with 3 steps per epoch, but these settings and "
                         "examples give 4: tune again from the beginning.")
    failed = [line for line in store.log_lines(job.id) if line.key == "log.failed"]
    assert failed[-1].line == f"Failed: {job.error}"
    with saying("fr"):
        assert failed[-1].said() == ("Échec : Le point de contrôle f a été fait avec 3 pas par "
                                     "époque, mais ces réglages et exemples en donnent 4 : relancez "
                                     "l'ajustement depuis le début.")
    with saying("zh-CN"):
        assert failed[-1].cause_said().startswith("检查点 f 是按每轮 3 步生成的")


def test_resuming_a_failed_job_queues_it_again(store, data_dir, version_id, tiny_model_dir):
    runner = JobRunner(store, data_dir)
    job = runner.submit(request(version_id, tiny_model_dir))
    claim(store, "me")
    store.change_job_state(job.id, "fail", error="boom")
    resumed = runner.resume(job.id)
    assert (resumed.state, resumed.error, resumed.queue_position) == ("queued", "", 1)
    assert log_text(store, job.id).endswith("Resumed from the start (no checkpoint had been written).")
    with pytest.raises(IllegalTransition):
        runner.resume(job.id)


# ---- restart ----------------------------------------------------------------------------------

def test_a_job_left_running_by_a_dead_process_resumes_ahead_of_newer_jobs(store, data_dir, version_id, tiny_model_dir, runners):
    train = RecordingTrain()
    runner = JobRunner(store, data_dir, train, poll_interval_s=0.05)
    old = runner.submit(request(version_id, tiny_model_dir, name="old", epochs=2))
    claim(store, "a process that died")  # 'running', and nobody holds its lock
    new = runner.submit(request(version_id, tiny_model_dir, name="new", epochs=1))
    runner.start()
    runners.append(runner)
    assert runner.wait(new.id, timeout_s=30).state == "succeeded"
    assert [path.name for path in train.calls] == ["old", "new"]
    assert ("The studio stopped while this job was running; resuming from the start (no "
            "checkpoint had been written).") in log_text(store, old.id)


def test_a_job_interrupted_by_a_studio_stop_resumes_from_its_checkpoint_at_the_next_start(store, data_dir, version_id, tiny_model_dir, runners):
    first = start(runners, store, data_dir)
    job = first.submit(request(version_id, tiny_model_dir, epochs=4))
    wait_for(lambda: (j := store.get_job(job.id)).checkpoint_step and j.completed_steps >= j.checkpoint_step + 3)
    first.stop()
    stopped = store.get_job(job.id)
    assert stopped.state == "interrupted" and stopped.completed_steps < stopped.total_steps
    before = {m.step: m.loss for m in store.metrics_after(job.id)}
    second = start(runners, store, data_dir)
    done = second.wait(job.id, timeout_s=60)
    assert done.state == "succeeded" and done.partial is False
    curve = store.metrics_after(job.id)
    assert [m.step for m in curve] == list(range(1, done.total_steps + 1))
    for m in curve[: stopped.completed_steps]:  # the re-run steps replay the same batches
        assert m.loss == pytest.approx(before[m.step], rel=1e-4, abs=1e-5)
    assert (f"The studio stopped while this job was running; resuming from the epoch "
            f"{stopped.checkpoint_epoch} checkpoint (step {stopped.checkpoint_step}).") in log_text(store, job.id)


def test_a_job_whose_studio_died_while_cancelling_ends_cancelled_with_its_checkpoint(store, data_dir, version_id, tiny_model_dir):
    runner = JobRunner(store, data_dir, RecordingTrain())
    job = runner.submit(request(version_id, tiny_model_dir))
    claim(store, "a process that died")
    adapter = runner.job_dir(job.id) / "checkpoints" / "epoch-1" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    store.update_job(job.id, checkpoint_epoch=1, checkpoint_step=10,
                     checkpoint_dir=f"tuned/{job.id}/checkpoints/epoch-1")
    store.change_job_state(job.id, "cancel")
    assert runner.recover() == []
    done = store.get_job(job.id)
    assert (done.state, done.partial, done.result_dir) == (
        "cancelled", True, f"tuned/{job.id}/checkpoints/epoch-1/adapter")
