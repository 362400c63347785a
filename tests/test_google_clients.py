"""Google's official Python clients, unchanged, against the running studio (``app.py`` in a
subprocess, with an API key): create a tuned model from inline examples, poll it to ACTIVE, list
it, rename it, generate with it (whole and streamed), delete it.

- ``google-generativeai`` (the Gemini tuning API's client): REST transport, ``api_endpoint`` set to
  the studio; it polls the long-running operation and parses it strictly.
- ``google-genai`` 1.46.0 (the newer SDK): ``base_url`` set to the studio; it polls the tuned model.
"""

from __future__ import annotations

import shutil
import time
import warnings

import pytest

from storage.db import Store
from tests.runner_helpers import api_studio, word_dataset
from training.inference import engine as inference

API_KEY = "test-key-123"
TINY = "tiny-llama"
HYPER = dict(epoch_count=2, batch_size=4, learning_rate=0.01)


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("clients")
    data_dir = root / "data"
    shutil.copytree(tiny_model_dir, data_dir / "models" / TINY)
    with api_studio(data_dir, root / "studio.log", API_KEY) as url:
        yield url, data_dir


def studio_answer(data_dir, model_id: str, text: str) -> str:
    """The studio's own greedy answer, computed in this process from the same files."""
    with Store(data_dir) as store:
        target = inference.resolve_target(store, data_dir, model_id)
        return inference.generate(target, text, cache=inference.ModelCache())


def pairs(count: int = 40) -> list[tuple[str, str]]:
    return [(ex.fields["input"], ex.output) for ex in word_dataset(count).examples]


@pytest.fixture(scope="module")
def legacy(server):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the package warns that it is deprecated
        import google.generativeai as genai
    genai.configure(api_key=API_KEY, transport="rest", client_options={"api_endpoint": server[0]})
    return genai


def test_google_generativeai_creates_polls_uses_and_deletes_a_tuned_model(server, legacy):
    from google.api_core import exceptions

    genai = legacy
    operation = genai.create_tuned_model(
        source_model=f"models/{TINY}", id="legacy-words", display_name="Legacy words",
        training_data=[{"text_input": i, "output": o} for i, o in pairs()], **HYPER)
    assert operation.name.startswith("tunedModels/legacy-words/operations/")
    tuned = operation.result(timeout=180)  # polls the operation until done
    assert (tuned.name, tuned.state.name) == ("tunedModels/legacy-words", "ACTIVE")
    assert operation.metadata.completed_steps == operation.metadata.total_steps == 20
    assert len(tuned.tuning_task.snapshots) == 20

    assert genai.get_tuned_model(tuned.name).display_name == "Legacy words"
    assert tuned.name in [m.name for m in genai.list_tuned_models(page_size=1)]
    assert genai.update_tuned_model(tuned.name, {"display_name": "Renamed"}).display_name == "Renamed"

    model = genai.GenerativeModel(tuned.name)
    expected = studio_answer(server[1], "legacy-words", "word07")
    assert model.generate_content("word07").text == expected
    assert "".join(c.text for c in model.generate_content("word07", stream=True)) == expected

    genai.delete_tuned_model(tuned.name)
    with pytest.raises(exceptions.NotFound):
        genai.get_tuned_model(tuned.name)


def test_google_generativeai_sees_a_bad_request_as_bad_request(server, legacy):
    from google.api_core import exceptions

    with pytest.raises(exceptions.BadRequest, match="tuning needs at least 20"):
        legacy.create_tuned_model(source_model=f"models/{TINY}", id="too-few",
                                  training_data=[{"text_input": i, "output": o} for i, o in pairs(5)])


def test_google_genai_tunes_polls_uses_and_deletes_a_tuned_model(server):
    from google import genai
    from google.genai import errors, types

    client = genai.Client(api_key=API_KEY, http_options=types.HttpOptions(
        base_url=server[0], api_version="v1beta"))
    job = client.tunings.tune(
        base_model=f"models/{TINY}",
        training_dataset=types.TuningDataset(examples=[
            types.TuningExample(text_input=i, output=o) for i, o in pairs()]),
        config=types.CreateTuningJobConfig(tuned_model_display_name="Genai words", **HYPER))
    deadline = time.monotonic() + 180
    while not job.has_ended:  # polls the tuned model until it is no longer CREATING
        assert time.monotonic() < deadline, "tuning did not finish"
        time.sleep(0.5)
        job = client.tunings.get(name=job.name)
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED

    listed = [m.name for m in client.models.list(config={"query_base": False, "page_size": 1})]
    assert job.name in listed
    assert client.models.update(model=job.name, config={"display_name": "Renamed"}).display_name == "Renamed"

    expected = studio_answer(server[1], job.name.removeprefix("tunedModels/"), "word07")
    assert client.models.generate_content(model=job.name, contents="word07").text == expected
    streamed = client.models.generate_content_stream(model=job.name, contents="word07")
    assert "".join(chunk.text or "" for chunk in streamed) == expected

    client.models.delete(model=job.name)
    with pytest.raises(errors.ClientError) as caught:
        client.models.get(model=job.name)
    assert caught.value.code == 404
