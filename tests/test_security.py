"""The studio as an attacker meets it: a real ``app.py`` on loopback, driven over HTTP.

Gradio's own HTTP API must not read files the browser did not upload; /v1beta must answer every
hostile body with a 400 in Google's shape (never a 500), bound the bodies it reads, and name base
models by id only; a refused create leaves nothing behind; the login slows down a guesser."""

from __future__ import annotations

import base64
import json
import socket
import tempfile
from pathlib import Path

import httpx
import pytest

from storage.db import Store
from studio.guards import MAX_REQUEST_BYTES
from tests.runner_helpers import word_dataset
from tests.studio_process import stop_studio, studio_with_models

TINY = "tiny-llama"
V = "v1beta"
SECRET = "secret-column,other\n" + "".join(f"top-secret-{n},x{n}\n" for n in range(30))


@pytest.fixture(scope="module")
def server(tmp_path_factory, bundled_model_dir, tiny_model_dir):
    studio = studio_with_models(tmp_path_factory.mktemp("security"), bundled_model_dir,
                                tiny_model_dir=tiny_model_dir, tiny_name=TINY)
    yield studio
    stop_studio(studio)


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("outside") / "passwords.csv"
    path.write_text(SECRET, encoding="utf-8")
    return path


def call_gradio(http: httpx.Client, api_name: str, data: list) -> tuple[str, str]:
    """POST /gradio_api/call/<name>, then read its event stream: (last event, its data)."""
    started = http.post(f"gradio_api/call/{api_name}", json={"data": data})
    assert started.status_code == 200, started.text
    event_id = started.json()["event_id"]
    text = http.get(f"gradio_api/call/{api_name}/{event_id}").text
    events = [line.removeprefix("event: ") for line in text.splitlines() if line.startswith("event: ")]
    payloads = [line.removeprefix("data: ") for line in text.splitlines() if line.startswith("data: ")]
    return events[-1], payloads[-1]


def file_handlers(http: httpx.Client) -> dict[str, list[str]]:
    """Every named UI endpoint with a File input, and its inputs' component names."""
    info = http.get("gradio_api/info").json()["named_endpoints"]
    found = {}
    for name, endpoint in info.items():
        components = [parameter["component"] for parameter in endpoint["parameters"]]
        if "File" in components or "UploadButton" in components:
            found[name.lstrip("/")] = components
    return found


def files_holding(folder: Path, text: str) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()
            and text.encode() in path.read_bytes()]


# ---- files: only what the browser uploaded -----------------------------------------------------


def test_the_ui_has_the_file_handlers_the_tests_cover(http):
    assert set(file_handlers(http)) == {"on_upload", "on_batch", "on_batch_source",
                                        "on_batch_source_1"}


@pytest.mark.parametrize("api_name", ["on_upload", "on_batch", "on_batch_source",
                                      "on_batch_source_1"])
def test_a_ui_handler_refuses_a_file_outside_the_upload_cache(http, server, secret_file, api_name):
    components = file_handlers(http)[api_name]
    file_data = {"path": str(secret_file), "meta": {"_type": "gradio.FileData"}}
    data = [file_data if c in ("File", "UploadButton") else None for c in components]
    if api_name == "on_upload":
        data[1] = "SmolLM2-135M-Instruct"
    event, payload = call_gradio(http, api_name, data)
    assert event == "error"
    assert "not uploaded by a user" in json.loads(payload)["error"]
    assert "top-secret" not in payload
    assert files_holding(server.data_dir, "top-secret") == []


def test_a_file_uploaded_through_gradio_is_read_from_the_studios_own_cache(http, server):
    uploaded = http.post("gradio_api/upload", files={"files": ("mine.csv", SECRET.encode())})
    assert uploaded.status_code == 200, uploaded.text
    (path,) = uploaded.json()
    assert Path(path).is_relative_to(server.data_dir / "cache" / "gradio")
    event, payload = call_gradio(http, "on_upload", [
        {"path": path, "meta": {"_type": "gradio.FileData"}}, "SmolLM2-135M-Instruct"])
    assert event == "complete"
    assert "CSV, 2 columns, 30 rows" in payload


def test_the_shared_gradio_temp_folder_is_not_served(http):
    shared = Path(tempfile.gettempdir()) / "gradio" / "security-probe"
    shared.mkdir(parents=True, exist_ok=True)
    probe = shared / "probe.csv"
    probe.write_text("shared-cache-content", encoding="utf-8")
    response = http.get(f"gradio_api/file={probe}")
    assert response.status_code in (403, 404)
    assert "shared-cache-content" not in response.text


# ---- /v1beta: hostile bodies are 400 INVALID_ARGUMENT naming the field -------------------------


def create_body(**changes) -> dict:
    examples = [{"textInput": e.fields["input"], "output": e.output} for e in word_dataset(20).examples]
    body = {"displayName": "Reverser", "baseModel": f"models/{TINY}",
            "tuningTask": {"hyperparameters": {"epochCount": 1, "batchSize": 4},
                           "trainingData": {"examples": {"examples": examples}}}}
    body.update(changes)
    return body


@pytest.fixture(scope="module")
def tuned_id(http) -> str:
    response = http.post(f"{V}/tunedModels", params={"tunedModelId": "guarded"}, json=create_body())
    assert response.status_code == 200, response.text
    return "guarded"


def raw(body: dict, marker: str, replacement: str) -> bytes:
    """``body`` as JSON text with the string ``marker`` replaced by raw JSON ``replacement``."""
    return json.dumps(body).replace(json.dumps(marker), replacement).encode()


DEEP = "[" * 10_000 + "]" * 10_000
HUGE = "7" * 4_000
LONE = '"\\ud800"'


def hostile_requests(tuned: str) -> list[tuple[str, str, bytes, str]]:
    """(method, path, body, what the message must say) for every hostile body of the issue."""
    generate = {"contents": [{"parts": [{"text": "MARK"}]}]}
    config = {"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"maxOutputTokens": "MARK"}}
    create = f"{V}/tunedModels"
    return [
        ("POST", create, raw(create_body(description="MARK"), "MARK", DEEP), "nested more than 64"),
        ("PATCH", f"{V}/tunedModels/{tuned}", raw({"description": "MARK"}, "MARK", DEEP), "nested more than 64"),
        ("POST", f"{V}/tunedModels/{tuned}:generateContent", raw(generate, "MARK", DEEP), "nested more than 64"),
        ("POST", f"{V}/models/{TINY}:generateContent", raw(generate, "MARK", DEEP), "nested more than 64"),
        ("POST", create, raw(create_body(tuningTask={"hyperparameters": {"epochCount": "MARK"}}), "MARK", HUGE),
         "tuningTask.hyperparameters.epochCount is a whole number of 4000 digits"),
        ("POST", create, raw(create_body(tuningTask={"hyperparameters": {"learningRate": "MARK"}}), "MARK", HUGE),
         "tuningTask.hyperparameters.learningRate is a whole number of 4000 digits"),
        ("PATCH", f"{V}/tunedModels/{tuned}", raw({"temperature": "MARK"}, "MARK", HUGE),
         "temperature is a whole number of 4000 digits"),
        ("POST", f"{V}/models/{TINY}:generateContent", raw(config, "MARK", HUGE),
         "generationConfig.maxOutputTokens is a whole number of 4000 digits"),
        ("POST", create, raw(create_body(displayName="MARK"), "MARK", LONE), "displayName holds a lone surrogate"),
        ("POST", create, raw(create_body(description="MARK"), "MARK", LONE), "description holds a lone surrogate"),
        ("POST", create, raw(create_body(tuningTask={"trainingData": {"examples": {"examples": [
            {"textInput": "MARK", "output": "x"}]}}}), "MARK", LONE),
         "tuningTask.trainingData.examples.examples[0].textInput holds a lone surrogate"),
        ("PATCH", f"{V}/tunedModels/{tuned}", raw({"displayName": "MARK"}, "MARK", LONE),
         "displayName holds a lone surrogate"),
        ("POST", f"{V}/tunedModels/{tuned}:generateContent", raw(generate, "MARK", LONE),
         "contents[0].parts[0].text holds a lone surrogate"),
    ]


@pytest.mark.parametrize("index", range(len(hostile_requests("x"))))
def test_a_hostile_body_is_an_invalid_argument_naming_the_field(http, tuned_id, index):
    method, path, body, message = hostile_requests(tuned_id)[index]
    response = http.request(method, path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert message in error["message"]


def test_a_description_longer_than_the_limit_is_refused(http, tuned_id):
    response = http.patch(f"{V}/tunedModels/{tuned_id}", json={"description": "d" * 2_001})
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("description is 2001 characters long: use "
                                                          "at most 2000.")


def send_raw(server, head: str, chunks) -> bytes:
    """Write an HTTP request by hand (``head``, then ``chunks`` until the studio stops reading)
    and return what the studio answered."""
    host, port = server.url.split("//")[1].rstrip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head.replace("HOST", host).encode())
        try:
            for chunk in chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the studio stopped reading: its answer is already waiting
        answer = b""
        try:
            while b"}}" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except ConnectionResetError:
            pass
    return answer


def test_a_body_declared_over_the_limit_is_refused_before_it_is_read(server):
    answer = send_raw(server, f"POST /{V}/tunedModels HTTP/1.1\r\nHost: HOST\r\nContent-Type: "
                              f"application/json\r\nContent-Length: {MAX_REQUEST_BYTES + 1}\r\n\r\n",
                      [b"{}"])
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"Request payload size exceeds the limit" in answer


def server_peak_memory_kb(server) -> int:
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))


def test_a_chunked_body_is_cut_off_at_the_limit(server):
    """200 MB sent without a length: the studio answers once it has read the limit, and its peak
    memory grows by far less than the body (it was ~590 MB before the limit)."""
    peak_before = server_peak_memory_kb(server)
    chunk = b"x" * (1024 * 1024)
    answer = send_raw(server, f"POST /{V}/tunedModels HTTP/1.1\r\nHost: HOST\r\nContent-Type: "
                              "application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
                      (b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(200)))
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"Request payload size exceeds the limit" in answer
    assert server_peak_memory_kb(server) - peak_before < 150 * 1024


# ---- /v1beta: base models by id only -----------------------------------------------------------


def test_a_path_is_not_a_base_model_and_the_answer_does_not_tell_what_exists(http, tiny_model_dir):
    answers = {}
    for path in ("/etc", "/etc/passwd", "/no/such/folder", str(tiny_model_dir)):
        response = http.get(f"{V}/models/{path}")
        assert response.status_code == 404
        answers[path] = response.json()["error"]["message"].replace(path.lstrip("/"), "PATH")
    assert len(set(answers.values())) == 1, answers


def test_generate_does_not_load_a_model_folder_named_by_path(http, tiny_model_dir):
    response = http.post(f"{V}/models/{tiny_model_dir}:generateContent",
                         json={"contents": [{"parts": [{"text": "hi"}]}]})
    assert response.status_code == 404
    assert response.json()["error"]["status"] == "NOT_FOUND"


def datasets(server) -> list[str]:
    with Store(server.data_dir) as store:
        return [summary.name for summary in store.list_datasets()]


@pytest.mark.parametrize("params, changes, status", [
    ({"tunedModelId": "Bad_Id"}, {}, (400, "INVALID_ARGUMENT")),
    ({"tunedModelId": "guarded"}, {}, (409, "ALREADY_EXISTS")),
    ({}, {"baseModel": "models//etc"}, (400, "INVALID_ARGUMENT")),
    ({}, {"baseModel": f"models/{Path.home()}"}, (400, "INVALID_ARGUMENT")),
    ({}, {"description": "d" * 2_001}, (400, "INVALID_ARGUMENT")),
])
def test_a_refused_create_leaves_no_dataset_behind(http, server, tuned_id, params, changes, status):
    before = datasets(server)
    response = http.post(f"{V}/tunedModels", params=params,
                         json=create_body(displayName="Refused one", **changes))
    assert (response.status_code, response.json()["error"]["status"]) == status
    assert datasets(server) == before


# ---- /v1beta: odd methods and tokens -----------------------------------------------------------


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS"])
def test_other_methods_answer_in_googles_shape(http, method):
    response = http.request(method, f"{V}/models")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    if method == "OPTIONS":
        assert response.json()["error"]["status"] == "NOT_FOUND"


def test_a_negative_page_token_is_refused(http):
    token = base64.urlsafe_b64encode(b"o:-5").decode()
    response = http.get(f"{V}/tunedModels", params={"pageToken": token})
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(f"pageToken '{token}' is not one")


# ---- login -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def login_server(tmp_path_factory, bundled_model_dir):
    studio = studio_with_models(tmp_path_factory.mktemp("login"), bundled_model_dir,
                                "--auth", "ada:right-pass")
    yield studio
    stop_studio(studio)


def test_repeated_wrong_logins_are_slowed_down(login_server):
    with httpx.Client(base_url=login_server.url, timeout=30) as client:
        answers = [client.post("login", data={"username": "ada", "password": f"guess{n}"})
                   for n in range(8)]
        statuses = [answer.status_code for answer in answers]
        assert statuses[:5] == [400] * 5
        assert statuses[5:] == [429] * 3
        assert int(answers[5].headers["retry-after"]) >= 1
        assert "Too many wrong logins" in answers[5].json()["detail"]
        refused = client.post("login", data={"username": "ada", "password": "right-pass"})
        assert refused.status_code == 429  # not even the right password while it must wait
