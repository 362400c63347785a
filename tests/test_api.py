"""The /v1beta API over HTTP (Starlette's test client on the real app): a real SQLite file, the
real job runner and trainer on the tiny model, real generation. One tuned model is created through
the API per module and polled to ACTIVE; the other tests read or use it."""

from __future__ import annotations

import json
import shutil
import time

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from storage.db import Store
from studio.api import routes as api
from studio.context import StudioContext
from tests.runner_helpers import word_dataset
from training.core.config import TuningConfig
from training.core.generation import GenerationParams
from training.inference import engine as inference
from training.jobs.runner import JobRequest, JobRunner

V = "/v1beta"
TINY = "tiny-llama"


def examples(count: int = 40) -> list[dict]:
    return [{"textInput": ex.fields["input"], "output": ex.output}
            for ex in word_dataset(count).examples]


def create_body(**changes) -> dict:
    body = {"displayName": "Word reverser", "baseModel": f"models/{TINY}",
            "tuningTask": {"hyperparameters": {"epochCount": 2, "batchSize": 4,
                                               "learningRate": 0.01},
                           "trainingData": {"examples": {"examples": examples()}}}}
    body.update(changes)
    return body


@pytest.fixture(scope="module")
def studio(tmp_path_factory, tiny_model_dir):
    data_dir = tmp_path_factory.mktemp("api") / "data"
    shutil.copytree(tiny_model_dir, data_dir / "models" / TINY)
    store = Store(data_dir)
    runner = JobRunner(store, data_dir, poll_interval_s=0.05)
    runner.start()
    ctx = StudioContext(data_dir=data_dir, store=store, runner=runner)
    yield ctx
    runner.stop()
    store.close_all()


def client_for(ctx, api_key=None) -> TestClient:
    app = FastAPI()
    api.install(app, ctx, api.ApiSettings(api_key=api_key))
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client(studio):
    return client_for(studio)


def wait_done(client, operation_name: str, timeout_s: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        operation = client.get(f"{V}/{operation_name}").json()
        if operation["done"]:
            return operation
        time.sleep(0.2)
    raise AssertionError(f"{operation_name} not done in {timeout_s} s")


@pytest.fixture(scope="module")
def tuned(client):
    """The operation, finished, of a tuned model created through the API."""
    response = client.post(f"{V}/tunedModels", params={"tunedModelId": "reverser"},
                           json=create_body(temperature=0.0, topK=20))
    assert response.status_code == 200, response.text
    return response.json(), wait_done(client, response.json()["name"])


def test_create_returns_a_long_running_operation(tuned):
    created, _ = tuned
    assert created["name"].startswith("tunedModels/reverser/operations/")
    assert created["metadata"]["@type"].endswith("v1beta.CreateTunedModelMetadata")
    assert created["metadata"]["tunedModel"] == "tunedModels/reverser"
    assert created["done"] is False


def test_the_operation_ends_with_the_active_tuned_model_and_its_progress(tuned):
    _, done = tuned
    meta, model = done["metadata"], done["response"]
    assert meta["totalSteps"] == meta["completedSteps"] == 20  # 40 examples / 4, 2 epochs
    assert meta["completedPercent"] == 100.0
    assert [s["step"] for s in meta["snapshots"]] == list(range(1, 21))
    assert {s["epoch"] for s in meta["snapshots"]} == {1, 2}
    assert model["@type"].endswith("v1beta.TunedModel")
    assert model["state"] == "ACTIVE"


def test_get_tuned_model_has_gemini_fields(client, tuned):
    model = client.get(f"{V}/tunedModels/reverser").json()
    assert model["name"] == "tunedModels/reverser"
    assert model["displayName"] == "Word reverser"
    assert model["baseModel"] == f"models/{TINY}"
    assert (model["temperature"], model["topK"]) == (0.0, 20)
    task = model["tuningTask"]
    assert task["hyperparameters"] == {"epochCount": 2, "batchSize": 4, "learningRate": 0.01}
    assert task["startTime"] <= task["completeTime"]
    assert set(task["snapshots"][0]) == {"step", "epoch", "meanLoss", "computeTime"}
    assert model["createTime"].endswith("Z")


def test_a_job_created_through_the_api_is_in_my_library(studio, tuned):
    job = studio.store.get_job("reverser")
    assert (job.display_name, job.state) == ("Word reverser", "succeeded")
    assert studio.store.get_dataset_version(job.dataset_version_id).name == "Word reverser (API)"


def test_a_job_created_in_the_ui_is_in_the_api(client, studio, tuned):
    version = studio.store.save_dataset("ui words", word_dataset(40))
    job = studio.runner.submit(JobRequest("From the UI", "", TINY, version.id,
                                          TuningConfig(epochs=1, learning_rate=0.01)))
    studio.runner.wait(job.id, timeout_s=120)
    names = [m["name"] for m in client.get(f"{V}/tunedModels", params={"pageSize": 100}).json()["tunedModels"]]
    assert f"tunedModels/{job.id}" in names


def test_generate_content_answers_as_the_studio_does(client, studio, tuned):
    response = client.post(f"{V}/tunedModels/reverser:generateContent",
                           json={"contents": [{"role": "user", "parts": [{"text": "stone"}]}],
                                 "generationConfig": {"maxOutputTokens": 8}})
    assert response.status_code == 200, response.text
    body = response.json()
    target = inference.resolve_target(studio.store, studio.data_dir, "reverser")
    expected = inference.generate(target, "stone", GenerationParams(max_output_tokens=8))
    candidate = body["candidates"][0]
    assert candidate["content"] == {"parts": [{"text": expected}], "role": "model"}
    assert candidate["finishReason"] in ("STOP", "MAX_TOKENS")
    usage = body["usageMetadata"]
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"]


def test_stream_generate_content_sends_server_sent_events(client, tuned):
    request = {"contents": [{"parts": [{"text": "stone"}]}], "generationConfig": {"maxOutputTokens": 8}}
    whole = client.post(f"{V}/tunedModels/reverser:generateContent", json=request).json()
    response = client.post(f"{V}/tunedModels/reverser:streamGenerateContent",
                           params={"alt": "sse"}, json=request)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line.removeprefix("data: "))
              for line in response.text.split("\r\n\r\n") if line.strip()]
    text = "".join(e["candidates"][0]["content"]["parts"][0]["text"] for e in events)
    assert text == whole["candidates"][0]["content"]["parts"][0]["text"]
    assert events[-1]["candidates"][0]["finishReason"] == whole["candidates"][0]["finishReason"]
    assert "usageMetadata" in events[-1]


def test_stream_without_sse_is_a_json_array(client, tuned):
    response = client.post(f"{V}/tunedModels/reverser:streamGenerateContent",
                           json={"contents": [{"parts": [{"text": "stone"}]}],
                                 "generationConfig": {"maxOutputTokens": 4}})
    chunks = response.json()
    assert isinstance(chunks, list) and chunks[-1]["candidates"][0]["finishReason"]


def test_base_model_generate_content_stops_at_max_output_tokens(client):
    response = client.post(f"{V}/models/{TINY}:generateContent",
                           json={"contents": [{"parts": [{"text": "Hello"}]}],
                                 "generationConfig": {"maxOutputTokens": 3, "temperature": 0}})
    body = response.json()
    assert body["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert body["usageMetadata"]["candidatesTokenCount"] == 3
    assert body["modelVersion"] == f"models/{TINY}"


def test_base_model_streams_a_conversation_with_a_system_instruction(client):
    response = client.post(f"{V}/models/{TINY}:streamGenerateContent", params={"alt": "sse"},
                           json={"systemInstruction": {"parts": [{"text": "Be brief."}]},
                                 "contents": [{"role": "user", "parts": [{"text": "Hi"}]},
                                              {"role": "model", "parts": [{"text": "Hello"}]},
                                              {"role": "user", "parts": [{"text": "Bye"}]}],
                                 "generationConfig": {"maxOutputTokens": 4, "temperature": 0}})
    events = [json.loads(line.removeprefix("data: "))
              for line in response.text.split("\r\n\r\n") if line.strip()]
    assert events[-1]["usageMetadata"]["candidatesTokenCount"] == 4
    assert events[-1]["candidates"][0]["finishReason"] == "MAX_TOKENS"


def test_patch_without_a_mask_changes_the_fields_given(client, tuned):
    response = client.patch(f"{V}/tunedModels/reverser", json={"description": "reverses words"})
    assert response.json()["description"] == "reverses words"
    fixed = client.patch(f"{V}/tunedModels/reverser", json={"baseModel": "models/other"})
    assert fixed.status_code == 400
    assert fixed.json()["error"]["message"].startswith("baseModel cannot be changed after creation")


def test_models_lists_the_base_models(client):
    names = [m["name"] for m in client.get(f"{V}/models").json()["models"]]
    assert names == ["models/SmolLM2-135M-Instruct", f"models/{TINY}"]
    model = client.get(f"{V}/models/{TINY}").json()
    assert model["inputTokenLimit"] == 2048
    assert "createTunedModel" in model["supportedGenerationMethods"]


def test_tuned_models_are_listed_page_by_page(client, tuned, studio):
    everything = [m["name"] for m in client.get(f"{V}/tunedModels", params={"pageSize": 100}).json()["tunedModels"]]
    first = client.get(f"{V}/tunedModels", params={"pageSize": 1}).json()
    second = client.get(f"{V}/tunedModels", params={"pageSize": 1, "pageToken": first["nextPageToken"]}).json()
    assert [m["name"] for m in first["tunedModels"] + second["tunedModels"]] == everything[:2]


def test_list_filters_by_state(client, tuned):
    listed = client.get(f"{V}/tunedModels", params={"filter": "state=ACTIVE", "pageSize": 100}).json()
    assert listed["tunedModels"] and {m["state"] for m in listed["tunedModels"]} == {"ACTIVE"}


def test_operations_are_listed_and_an_unknown_one_is_not_found(client, tuned):
    created, _ = tuned
    listed = client.get(f"{V}/tunedModels/reverser/operations").json()["operations"]
    assert [op["name"] for op in listed] == [created["name"]]
    assert created["name"] in [op["name"] for op in client.get(f"{V}/operations", params={"pageSize": 100}).json()["operations"]]
    missing = client.get(f"{V}/tunedModels/reverser/operations/abc")
    assert missing.status_code == 404 and missing.json()["error"]["status"] == "NOT_FOUND"


def test_patch_changes_the_name_and_the_defaults(client, studio, tuned):
    description = client.get(f"{V}/tunedModels/reverser").json()["description"]
    response = client.patch(f"{V}/tunedModels/reverser", params={"updateMask": "displayName,topK"},
                            json={"displayName": "Reverser v2", "topK": 7, "description": "ignored"})
    assert response.status_code == 200, response.text
    assert (response.json()["displayName"], response.json()["topK"]) == ("Reverser v2", 7)
    assert response.json()["description"] == description  # not in the mask: unchanged
    assert studio.store.get_job("reverser").display_name == "Reverser v2"
    assert inference.resolve_target(studio.store, studio.data_dir, "reverser").defaults.top_k == 7


def test_delete_removes_a_tuned_model(client, studio, tuned):
    version = studio.store.save_dataset("to delete", word_dataset(40))
    job = studio.runner.submit(JobRequest("Short lived", "", TINY, version.id, TuningConfig(epochs=1)))
    studio.runner.wait(job.id, timeout_s=120)
    assert client.delete(f"{V}/tunedModels/{job.id}").json() == {}
    gone = client.get(f"{V}/tunedModels/{job.id}")
    assert gone.status_code == 404
    assert gone.json()["error"]["message"].startswith(f"There is no tuned model '{job.id}'")


def test_delete_of_a_model_still_training_cancels_it_first(client, studio):
    response = client.post(f"{V}/tunedModels", params={"tunedModelId": "long-one"},
                           json=create_body(tuningTask={"hyperparameters": {"epochCount": 50,
                                                                            "shardModel": True},
                                                        "trainingData": {"examples": {"examples": examples()}}}))
    assert response.status_code == 200, response.text
    assert studio.store.get_job("long-one").config.shard_model is True  # the FSDP extension
    assert client.delete(f"{V}/tunedModels/long-one").status_code == 200
    assert client.get(f"{V}/tunedModels/long-one").status_code == 404


def test_generating_with_a_model_still_creating_says_to_wait(client, studio):
    client.post(f"{V}/tunedModels", params={"tunedModelId": "not-yet"},
                json=create_body(tuningTask={"hyperparameters": {"epochCount": 50},
                                             "trainingData": {"examples": {"examples": examples()}}}))
    try:
        response = client.post(f"{V}/tunedModels/not-yet:generateContent",
                               json={"contents": [{"parts": [{"text": "stone"}]}]})
        error = response.json()["error"]
        assert (response.status_code, error["status"]) == (400, "FAILED_PRECONDITION")
        assert error["message"].startswith("tunedModels/not-yet is CREATING: ")
    finally:
        client.delete(f"{V}/tunedModels/not-yet")


BAD_CREATES = [
    ({"baseModel": None}, "baseModel is missing: it is required."),
    ({"baseModel": "SmolLM2"}, "baseModel is 'SmolLM2': write it as models/ID"),
    ({"baseModel": "models/no-such-model"}, "baseModel 'models/no-such-model': 'no-such-model' is not a base model"),
    ({"colour": "red"}, "Unknown field colour: the fields here are displayName"),
    ({"displayName": "x" * 41}, "displayName is 41 characters long: use at most 40."),
    ({"tuningTask": None}, "tuningTask is missing"),
    ({"tuningTask": {"hyperparameters": {"epochCount": 0}, "trainingData": {"examples": {"examples": examples()}}}},
     "tuningTask.hyperparameters.epochCount: Epochs is 0"),
    ({"tuningTask": {"hyperparameters": {"processes": 65}, "trainingData": {"examples": {"examples": examples()}}}},
     "tuningTask.hyperparameters.processes: Training processes is 65: use a whole number from 0 (one per GPU) to 64."),
    ({"tuningTask": {"hyperparameters": {"shardModel": "yes"}, "trainingData": {"examples": {"examples": examples()}}}},
     'tuningTask.hyperparameters.shardModel must be true or false, not "yes".'),
    ({"tuningTask": {"hyperparameters": {"batchSize": "four"}, "trainingData": {"examples": {"examples": examples()}}}},
     "tuningTask.hyperparameters.batchSize must be a whole number, not a string."),
    ({"tuningTask": {"hyperparameters": {"learningRate": 0.1, "learningRateMultiplier": 2},
                     "trainingData": {"examples": {"examples": examples()}}}},
     "tuningTask.hyperparameters: set learningRate or learningRateMultiplier, not both."),
    ({"tuningTask": {"trainingData": {"examples": {"examples": [{"textInput": 3, "output": "x"}]}}}},
     "tuningTask.trainingData.examples.examples[0].textInput must be a string, not a number."),
    ({"tuningTask": {"trainingData": {"examples": {"examples": [{"textInput": "a"}]}}}},
     "tuningTask.trainingData.examples.examples[0].output is missing"),
    ({"tuningTask": {"trainingData": {"examples": {"examples": examples(5)}}}},
     "tuningTask.trainingData: The dataset has 5 examples; tuning needs at least 20."),
    ({"tunedModelSource": {"tunedModel": "tunedModels/x"}}, "tunedModelSource: tuning a tuned model"),
]


@pytest.mark.parametrize("changes, message", BAD_CREATES)
def test_a_bad_create_request_names_the_field(client, changes, message):
    body = {k: v for k, v in create_body(**changes).items() if v is not None}
    response = client.post(f"{V}/tunedModels", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert error["message"].startswith(message)


def test_a_taken_or_malformed_tuned_model_id_is_refused(client, tuned):
    taken = client.post(f"{V}/tunedModels", params={"tunedModelId": "reverser"}, json=create_body())
    assert (taken.status_code, taken.json()["error"]["status"]) == (409, "ALREADY_EXISTS")
    bad = client.post(f"{V}/tunedModels", params={"tunedModelId": "Bad_Id"}, json=create_body())
    assert bad.status_code == 400
    assert bad.json()["error"]["message"].startswith("The tuned model id 'Bad_Id' is not allowed")


def test_malformed_json_is_an_invalid_argument(client):
    response = client.post(f"{V}/tunedModels", content=b"{not json",
                           headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("Invalid JSON payload received")


BAD_GENERATES = [
    ({"contents": []}, "contents must be a non-empty list"),
    ({"contents": [{"role": "robot", "parts": [{"text": "hi"}]}]}, "contents[0].role is 'robot'"),
    ({"contents": [{"parts": [{"inlineData": {}}]}]}, "Unknown field contents[0].parts[0].inlineData"),
    ({"contents": [{"parts": [{"text": "hi"}]}, {"role": "model", "parts": [{"text": "yo"}]}]},
     "contents[1] is the model's turn"),
    ({"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"temperature": 5}},
     "generationConfig.temperature: Temperature is 5"),
    ({"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"candidateCount": 2}},
     "generationConfig.candidateCount is 2"),
    ({"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"stopSequences": "x"}},
     "generationConfig.stopSequences must be a list of strings."),
    ({"contents": [{"parts": [{"text": "a"}]}, {"role": "model", "parts": [{"text": "b"}]},
                   {"parts": [{"text": "c"}]}]}, "tunedModels/reverser was tuned on single prompts"),
]


@pytest.mark.parametrize("body, message", BAD_GENERATES)
def test_a_bad_generate_request_names_the_field(client, tuned, body, message):
    response = client.post(f"{V}/tunedModels/reverser:generateContent", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"].startswith(message)


@pytest.mark.parametrize("method, path", [
    ("get", "/tunedModels/nobody"), ("post", "/tunedModels/nobody:generateContent"),
    ("get", "/models/nobody"), ("get", "/nothing/here"), ("put", "/tunedModels"),
])
def test_what_does_not_exist_is_not_found_in_googles_shape(client, method, path):
    response = getattr(client, method)(V + path, **({"json": {"contents": [{"parts": [{"text": "x"}]}]}}
                                                     if method == "post" else {}))
    assert response.status_code == 404
    assert set(response.json()["error"]) == {"code", "message", "status"}
    assert response.json()["error"]["status"] == "NOT_FOUND"


@pytest.mark.parametrize("headers, params, status", [
    ({}, {}, 403),
    ({"x-goog-api-key": "wrong"}, {}, 400),
    ({"x-goog-api-key": "s3cret"}, {}, 200),
    ({}, {"key": "s3cret"}, 200),
])
def test_the_api_key_is_required_when_set(studio, headers, params, status):
    response = client_for(studio, api_key="s3cret").get(f"{V}/models", headers=headers, params=params)
    assert response.status_code == status
    if status != 200:
        assert response.json()["error"]["status"] in ("PERMISSION_DENIED", "INVALID_ARGUMENT")


# ---- export (an extension) ----

def test_export_returns_a_gguf_zip_with_its_modelfile(client, tuned):
    response = client.post(f"{V}/tunedModels/reverser:export",
                           json={"format": "gguf", "quantization": "f16"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert 'filename="reverser-f16-gguf.zip"' in response.headers["content-disposition"]
    import io
    import zipfile

    names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    assert sorted(names) == ["reverser-f16-gguf/Modelfile", "reverser-f16-gguf/README.md",
                             "reverser-f16-gguf/reverser-f16.gguf"]


def test_export_of_a_checkpoint_as_an_adapter(client, tuned):
    response = client.post(f"{V}/tunedModels/reverser:export",
                           json={"format": "adapter", "checkpoint": "epoch-1"})
    assert response.status_code == 200, response.text
    assert 'filename="reverser-epoch-1-adapter.zip"' in response.headers["content-disposition"]


@pytest.mark.parametrize("body, status, message", [
    ({"format": "onnx"}, 400, "The export format 'onnx' is unknown: use one of gguf, adapter, merged."),
    ({"format": "gguf", "quantization": "q2"}, 400, "The quantization 'q2' is unknown"),
    ({"format": "merged", "quantization": "q8_0"}, 400, "A quantization applies to GGUF exports only"),
    ({"checkpoint": "epoch-7"}, 400, "has no checkpoint 'epoch-7': choose one of epoch-1, epoch-2."),
    ({"size": "big"}, 400, "Unknown field size"),
])
def test_export_refusals_name_what_to_choose(client, tuned, body, status, message):
    response = client.post(f"{V}/tunedModels/reverser:export", json=body)
    assert response.status_code == status
    assert message in response.json()["error"]["message"]


def test_export_of_an_unknown_model_is_not_found(client):
    response = client.post(f"{V}/tunedModels/nobody:export", json={})
    assert response.status_code == 404
