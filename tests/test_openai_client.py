"""The official ``openai`` Python client, unchanged, against the running studio (``app.py`` in a
subprocess, with an API key): list the models, chat with a tuned and a base model, whole and
streamed, with the sampling settings, and the errors it raises for refusals. Greedy answers are
compared with the studio's own, computed in this process from the same files."""

from __future__ import annotations

import json
import shutil
import urllib.request

import pytest

from storage.db import Store
from tests.runner_helpers import api_studio, wait_for, word_dataset
from training.core.dataset import Message
from training.core.generation import GenerationParams
from training.inference import engine as inference

API_KEY = "openai-key-456"
TINY = "tiny-llama"
TUNED = "openai-words"
HELD_OUT = ["word03", "word11", "word27", "word38"]


def _post(url: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(f"{url}{path}", data=json.dumps(body).encode(), method="POST",
                                     headers={"x-goog-api-key": API_KEY,
                                              "content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _get(url: str, path: str) -> dict:
    request = urllib.request.Request(f"{url}{path}", headers={"x-goog-api-key": API_KEY})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir):
    """The studio with a tiny base model and a model tuned on it through /v1beta."""
    root = tmp_path_factory.mktemp("openai")
    data_dir = root / "data"
    shutil.copytree(tiny_model_dir, data_dir / "models" / TINY)
    with api_studio(data_dir, root / "studio.log", API_KEY) as url:
        examples = [{"textInput": ex.fields["input"], "output": ex.output}
                    for ex in word_dataset(40).examples]
        _post(url, f"/v1beta/tunedModels?tunedModelId={TUNED}", {
            "baseModel": f"models/{TINY}", "tuningTask": {
                "hyperparameters": {"epochCount": 2, "batchSize": 4, "learningRate": 0.01},
                "trainingData": {"examples": {"examples": examples}}}})
        assert wait_for(lambda: _get(url, f"/v1beta/tunedModels/{TUNED}")["state"] == "ACTIVE",
                        timeout_s=180)
        yield url, data_dir


@pytest.fixture(scope="module")
def client(server):
    from openai import OpenAI

    return OpenAI(api_key=API_KEY, base_url=f"{server[0]}/v1", max_retries=0, timeout=120)


def studio_answer(data_dir, model_id: str, request, params: GenerationParams | None = None,
                  usage: inference.Usage | None = None) -> str:
    with Store(data_dir) as store:
        target = inference.resolve_target(store, data_dir, model_id)
        return "".join(inference.stream(target, request, params, usage=usage,
                                        cache=inference.ModelCache()))


def test_models_lists_the_tuned_and_the_base_models(client):
    listed = {m.id: m for m in client.models.list()}
    assert {TUNED, TINY} <= set(listed)
    assert listed[TUNED].object == "model" and listed[TUNED].owned_by == "tuning-studio"
    assert listed[TUNED].created > 1_700_000_000
    assert client.models.retrieve(TUNED).id == TUNED


def test_a_tuned_model_answers_as_in_the_studio_whole_and_streamed(server, client):
    for text in HELD_OUT:
        expected = studio_answer(server[1], TUNED, text)
        whole = client.chat.completions.create(
            model=TUNED, messages=[{"role": "user", "content": text}], temperature=0)
        assert whole.choices[0].message.content == expected
        assert whole.choices[0].message.role == "assistant"
        assert whole.choices[0].finish_reason in ("stop", "length")
        assert whole.usage.completion_tokens > 0 and whole.usage.prompt_tokens > 0
        assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens

        chunks = list(client.chat.completions.create(
            model=f"tunedModels/{TUNED}", messages=[{"role": "user", "content": text}],
            temperature=0, stream=True, stream_options={"include_usage": True}))
        assert chunks[0].choices[0].delta.role == "assistant"
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == \
            whole.choices[0].finish_reason
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == \
            whole.usage.completion_tokens
        assert len({c.id for c in chunks}) == 1


def test_a_base_model_takes_a_conversation_with_a_system_message(server, client):
    messages = [Message("system", "Answer briefly."), Message("user", "word05"),
                Message("assistant", "50drow"), Message("user", "word06")]
    usage = inference.Usage()  # the tiny random model's tokens may decode to no text: count them
    expected = studio_answer(server[1], TINY, messages, GenerationParams(temperature=0,
                                                                          max_output_tokens=12),
                             usage)
    answer = client.chat.completions.create(
        model=f"models/{TINY}", messages=[{"role": m.role, "content": m.content} for m in messages],
        temperature=0, max_tokens=12)
    assert answer.choices[0].message.content == expected
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (
        usage.prompt_tokens, usage.output_tokens)
    alone = client.chat.completions.create(model=TINY, temperature=0, max_tokens=12,
                                           messages=[{"role": "user", "content": "word06"}])
    assert alone.usage.prompt_tokens < usage.prompt_tokens  # the earlier turns were in the prompt
    developer = client.chat.completions.create(
        model=TINY, temperature=0, max_completion_tokens=12,
        messages=[{"role": "developer", "content": [{"type": "text", "text": "Answer briefly."}]},
                  *[{"role": m.role, "content": m.content} for m in messages[1:]]])
    assert developer.choices[0].message.content == expected
    assert developer.usage.prompt_tokens == usage.prompt_tokens


def test_max_tokens_stop_and_seed_are_honoured(server, client):
    short = client.chat.completions.create(
        model=TUNED, messages=[{"role": "user", "content": "word01"}], temperature=0, max_tokens=2)
    assert (short.choices[0].finish_reason, short.usage.completion_tokens) == ("length", 2)
    whole = studio_answer(server[1], TUNED, "word01")
    assert len(whole) >= 4, whole
    stop = whole[2:4]
    stopped = client.chat.completions.create(
        model=TUNED, messages=[{"role": "user", "content": "word01"}], temperature=0, stop=stop)
    assert stopped.choices[0].message.content == whole[:whole.index(stop)]
    assert stopped.choices[0].finish_reason == "stop"

    def sampled(seed):
        return client.chat.completions.create(
            model=TINY, messages=[{"role": "user", "content": "word09"}], temperature=1.0,
            top_p=0.95, seed=seed, max_tokens=10).choices[0].message.content
    assert sampled(7) == sampled(7)
    assert len({sampled(seed) for seed in (1, 2, 3, 4)}) > 1  # the seed is what fixed it


def test_refusals_are_openai_errors_that_say_what_to_do(server, client):
    import openai
    from openai import OpenAI

    with pytest.raises(openai.AuthenticationError, match="API key not valid"):
        OpenAI(api_key="wrong", base_url=f"{server[0]}/v1", max_retries=0).models.list()
    with pytest.raises(openai.NotFoundError, match="GET /v1/models"):
        client.chat.completions.create(model="no-such-model",
                                       messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="temperature: Temperature is 9"):
        client.chat.completions.create(model=TUNED, temperature=9,
                                       messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="single prompts, not conversations: send "
                                                     "one user message"):
        client.chat.completions.create(model=TUNED, messages=[
            {"role": "system", "content": "Be nice."}, {"role": "user", "content": "word01"}])
    with pytest.raises(openai.BadRequestError, match=r"messages\[0\] is not a user message"):
        client.chat.completions.create(model=TUNED,
                                       messages=[{"role": "assistant", "content": "x"}])
    with pytest.raises(openai.BadRequestError, match="n is 2"):
        client.chat.completions.create(model=TUNED, n=2,
                                       messages=[{"role": "user", "content": "word01"}])
    with pytest.raises(openai.BadRequestError, match="function calling is not supported"):
        client.chat.completions.create(model=TUNED, messages=[{"role": "user", "content": "x"}],
                                       tools=[{"type": "function", "function": {"name": "f"}}])
    with pytest.raises(openai.NotFoundError, match="There is no POST /v1/completions"):
        client.completions.create(model=TUNED, prompt="word01")
