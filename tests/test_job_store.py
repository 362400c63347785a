"""Storage of tuning jobs and their progress rows, on a real SQLite file in tmp_path."""

import pytest

from storage.db import Store
from tests.runner_helpers import claim
from training.core.config import TuningConfig
from training.core.dataset import Dataset, Example, PromptTemplate
from training.core.errors import NotFoundError, StudioError
from training.core.progress import EpochSnapshot, EvalMetrics, StepMetrics
from training.core.states import IllegalTransition


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "data") as store:
        yield store


@pytest.fixture
def version_id(store):
    examples = tuple(Example({"input": f"q{i}"}, f"a{i}", f"row {i}") for i in range(1, 21))
    return store.save_dataset("QA", Dataset(PromptTemplate(), examples)).id


def new_job(store, version_id, name="My model", **config):
    return store.create_job(display_name=name, description="d", base_model="base",
                            dataset_version_id=version_id, config=TuningConfig(**config))


def step(n: int, loss: float = 1.0) -> StepMetrics:
    return StepMetrics(step=n, epoch=n / 4, loss=loss, token_accuracy=0.5, num_predictions=10,
                       learning_rate=1e-3, tokens=40, step_time_s=0.1)


def test_a_new_job_is_queued_with_an_id_from_its_name_and_its_config(store, version_id):
    job = new_job(store, version_id, epochs=2)
    assert (job.id, job.state, job.gemini_state, job.queue_position) == (
        "my-model", "queued", "CREATING", 1)
    assert store.get_job("my-model").config == TuningConfig(epochs=2)


def test_ids_stay_unique_and_the_list_is_newest_first(store, version_id):
    ids = [new_job(store, version_id).id for _ in range(3)]
    assert ids == ["my-model", "my-model-2", "my-model-3"]
    assert [job.id for job in store.list_jobs()] == ids[::-1]


def test_the_queue_is_first_in_first_out_and_positions_count_from_1(store, version_id):
    first, second = new_job(store, version_id, name="a"), new_job(store, version_id, name="b")
    assert store.get_job(second.id).queue_position == 2
    claimed = claim(store, "me")
    assert (claimed.id, claimed.state, claimed.owner, claimed.queue_position) == (
        first.id, "running", "me", None)
    assert store.get_job(second.id).queue_position == 1


def test_a_resumed_job_can_go_ahead_of_the_queue(store, version_id):
    old = new_job(store, version_id, name="old")
    new_job(store, version_id, name="new")
    claim(store, "me")
    store.change_job_state(old.id, "interrupt")
    store.requeue_job(old.id, front=True)
    assert store.next_queued_job().id == "old"


def test_state_changes_follow_the_transition_table(store, version_id):
    job = new_job(store, version_id)
    with pytest.raises(IllegalTransition, match="only a queued job can start"):
        store.change_job_state(store.change_job_state(job.id, "cancel").id, "start")
    assert store.get_job(job.id).finished_at is not None


def test_step_rows_are_read_back_after_a_step_for_incremental_charts(store, version_id):
    job = new_job(store, version_id)
    for n in range(1, 6):
        store.record_step(job.id, step(n, loss=1 / n))
    assert store.metrics_after(job.id, 3) == [step(4, 0.25), step(5, 0.2)]
    assert store.get_job(job.id).completed_steps == 5


def test_truncating_after_a_checkpoint_drops_later_steps_evals_and_snapshots(store, version_id):
    job = new_job(store, version_id)
    for n in range(1, 9):
        store.record_step(job.id, step(n))
    for n in (4, 8):
        store.record_eval(job.id, EvalMetrics(n, n / 4, 1.0, 0.5, 30))
        store.record_snapshot(job.id, EpochSnapshot(n // 4, n, 1.0, 2.0))
    store.truncate_metrics_after(job.id, 4)
    assert [m.step for m in store.metrics_after(job.id)] == [1, 2, 3, 4]
    assert [e.step for e in store.job_evals(job.id)] == [4]
    assert [s.epoch for s in store.job_snapshots(job.id)] == [1]
    assert store.get_job(job.id).completed_steps == 4


def test_log_lines_are_numbered_and_read_after_a_sequence_number(store, version_id):
    job = new_job(store, version_id)
    assert [store.append_log(job.id, f"line {n}") for n in range(3)] == [1, 2, 3]
    assert [line.line for line in store.log_lines(job.id, after_seq=1)] == ["line 1", "line 2"]


def test_deleting_a_job_removes_its_rows_but_a_running_job_is_refused(store, version_id):
    job = new_job(store, version_id)
    store.record_step(job.id, step(1))
    store.append_log(job.id, "hello")
    claim(store, "me")
    with pytest.raises(StudioError, match="is still training: cancel it first, then delete it"):
        store.delete_job(job.id)
    store.change_job_state(job.id, "fail", error="boom")
    store.delete_job(job.id)
    with pytest.raises(NotFoundError):
        store.get_job(job.id)
    assert store.db.execute("SELECT count(*) FROM job_metrics").fetchone()[0] == 0


def test_a_dataset_version_is_found_by_its_version_id(store, version_id):
    assert store.get_dataset_version(version_id).name == "QA"
    with pytest.raises(NotFoundError) as caught:
        store.get_dataset_version(999)
    assert str(caught.value) == "Dataset version 999 does not exist: choose a saved dataset version."
