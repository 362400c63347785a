"""Job creation (training.jobs.create): one check, one transaction, nothing left when refused."""

import json

import pytest

from storage.db import Store
from tests.runner_helpers import word_dataset
from training.core.config import ConfigError, TuningConfig
from training.core.dataset import NewDataset
from training.core.errors import ConflictError, DatasetError
from training.core.generation import GenerationParams
from training.core.layout import tuned_dir
from training.core.limits import DEFAULT_LIMITS
from training.jobs.create import create_job
from training.jobs.request import JobRequest


@pytest.fixture
def store(data_dir):
    with Store(data_dir) as store:
        yield store


def inline(tiny_model_dir, **changes) -> JobRequest:
    request = JobRequest("Reverser", "reverses words", str(tiny_model_dir), None,
                         TuningConfig(epochs=2, batch_size=4),
                         new_dataset=NewDataset("Reverser (API)", word_dataset(), format="jsonl",
                                                upload=("words.jsonl", b'{"x": 1}\n')))
    return JobRequest(**{**request.__dict__, **changes})


def nothing_saved(store, data_dir) -> bool:
    return (store.list_jobs() == [] and store.list_datasets() == []
            and not (data_dir / "tuned").exists())


def test_inline_examples_the_job_its_planned_steps_and_defaults_are_saved_together(store, data_dir, tiny_model_dir):
    job = create_job(store, data_dir, inline(tiny_model_dir, generation_defaults=GenerationParams(
        temperature=0.5)), DEFAULT_LIMITS)
    version = store.get_dataset_version(job.dataset_version_id)
    assert (version.name, version.example_count, version.format) == ("Reverser (API)", 40, "jsonl")
    assert store.get_upload(version.upload_id).original_name == "words.jsonl"
    assert (job.state, job.steps_per_epoch, job.total_steps) == ("queued", 10, 20)
    saved = json.loads((tuned_dir(data_dir, job.id) / "generation.json").read_text())
    assert saved["temperature"] == 0.5


def test_a_taken_id_leaves_no_second_dataset_version_and_no_folder(store, data_dir, tiny_model_dir):
    first = create_job(store, data_dir, inline(tiny_model_dir, tuned_model_id="reverser"), DEFAULT_LIMITS)
    with pytest.raises(ConflictError, match="already exists"):
        create_job(store, data_dir, inline(tiny_model_dir, tuned_model_id="reverser",
                                           generation_defaults=GenerationParams(top_k=3)),
                   DEFAULT_LIMITS)
    assert [job.id for job in store.list_jobs()] == [first.id]
    assert [v.version for v in store.list_versions("Reverser (API)")] == [1]
    assert not (tuned_dir(data_dir, first.id) / "generation.json").exists()


@pytest.mark.parametrize("changes, error", [
    ({"generation_defaults": GenerationParams(temperature=5.0)}, ConfigError),
    ({"config": TuningConfig(batch_size=0)}, ConfigError),
    ({"new_dataset": NewDataset("Few", word_dataset(3))}, DatasetError),
])
def test_a_refused_request_saves_nothing(store, data_dir, tiny_model_dir, changes, error):
    with pytest.raises(error):
        create_job(store, data_dir, inline(tiny_model_dir, **changes), DEFAULT_LIMITS)
    assert nothing_saved(store, data_dir)


def test_a_file_that_cannot_be_written_rolls_the_rows_back(store, data_dir, tiny_model_dir):
    (data_dir / "tuned").write_text("a file where the tuned folder goes")
    with pytest.raises(OSError):
        create_job(store, data_dir, inline(tiny_model_dir, generation_defaults=GenerationParams(
            top_k=3)), DEFAULT_LIMITS)
    assert store.list_jobs() == [] and store.list_datasets() == []
