"""Property: no JSON body, however deep, wide or strange, makes /v1beta answer 500. Arbitrary
bodies go over HTTP to a real studio (the tiny model as a base model, one tuned model queued) on
the create, patch and generate routes; every answer must be a 2xx or a 4xx in Google's shape."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.studio_process import stop_studio, studio_with_models

TINY = "tiny-llama"
FUZZ = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

KEYS = st.sampled_from([
    "displayName", "description", "baseModel", "tuningTask", "hyperparameters", "epochCount",
    "batchSize", "learningRate", "learningRateMultiplier", "trainingData", "examples", "textInput",
    "text_input", "output", "contents", "parts", "text", "role", "generationConfig", "temperature",
    "topP", "topK", "maxOutputTokens", "stopSequences", "candidateCount", "seed",
    "systemInstruction", "updateMask", "tunedModelSource",
]) | st.text(max_size=12)
TEXT = st.text(alphabet=st.characters(blacklist_categories=()), max_size=40)  # surrogates too
NUMBERS = (st.integers() | st.integers(min_value=10 ** 18, max_value=10 ** 400)
           | st.floats(allow_nan=True, allow_infinity=True))
LEAVES = st.none() | st.booleans() | NUMBERS | TEXT | st.sampled_from(["models/tiny-llama", "user", "model"])
JSON = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=8)
                    | st.dictionaries(KEYS, inner, max_size=8), max_leaves=80)


@st.composite
def bodies(draw) -> bytes:
    """Arbitrary JSON, sometimes wrapped thousands of levels deep, as the bytes a client sends."""
    value = draw(JSON)
    depth = draw(st.sampled_from([0, 0, 0, 5, 70, 3_000, 20_000]))
    text = json.dumps(value)  # ensure_ascii: lone surrogates travel as \udXXX escapes
    if depth:
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"contents":', "}")]))
        text = opener * depth + text + closer * depth
    return text.encode()


@pytest.fixture(scope="module")
def http(tmp_path_factory, bundled_model_dir, tiny_model_dir):
    studio = studio_with_models(tmp_path_factory.mktemp("fuzz"), bundled_model_dir,
                                tiny_model_dir=tiny_model_dir, tiny_name=TINY)
    with httpx.Client(base_url=studio.url + "v1beta/", timeout=120) as client:
        examples = [{"textInput": f"w{n}", "output": f"{n}w"} for n in range(20)]
        created = client.post("tunedModels", params={"tunedModelId": "target"}, json={
            "baseModel": f"models/{TINY}", "tuningTask": {
                "hyperparameters": {"epochCount": 1},
                "trainingData": {"examples": {"examples": examples}}}})
        assert created.status_code == 200, created.text
        yield client
    stop_studio(studio)


def assert_answered(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text[:500]
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"code", "message", "status"}


@pytest.mark.parametrize("method, path", [
    ("POST", "tunedModels"),
    ("PATCH", "tunedModels/target"),
    ("POST", "tunedModels/target:generateContent"),
    ("POST", f"models/{TINY}:generateContent"),
    ("POST", f"models/{TINY}:streamGenerateContent?alt=sse"),
])
@FUZZ
@given(body=bodies())
def test_no_body_gives_a_server_error(http, method, path, body):
    assert_answered(http.request(method, path, content=body,
                                 headers={"content-type": "application/json"}))
