"""The studio as a real ``app.py`` subprocess on a free port, for tests that drive it over HTTP
(the browser tests, the security tests): start it, wait until it serves, stop its process group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVER_START_TIMEOUT_S = 120.0
SERVER_STOP_TIMEOUT_S = 10.0
SERVER_POLL_INTERVAL_S = 0.25
LOG_TAIL_CHARS = 6_000


@dataclass(frozen=True)
class StudioServer:
    """A running ``app.py`` subprocess."""

    url: str
    """Base URL with a trailing slash, e.g. ``http://127.0.0.1:41234/``."""
    data_dir: Path
    log_path: Path
    """The server's stdout and stderr together."""
    process: subprocess.Popen

    def output(self) -> str:
        """The last part of what the server printed."""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return text[-LOG_TAIL_CHARS:]


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def studio_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        GRADIO_ANALYTICS_ENABLED="False",
        PYTHONUNBUFFERED="1",
    )
    return env


def start_studio(data_dir: Path, log_path: Path, *extra_args: str) -> StudioServer:
    """Start ``app.py`` (with ``extra_args``, e.g. ``--auth``) and return once its page answers
    HTTP 200; fail with its output if not."""
    port = free_tcp_port()
    command = [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port),
               "--data-dir", str(data_dir), *extra_args]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=studio_env(), stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    server = StudioServer(url=f"http://127.0.0.1:{port}/", data_dir=data_dir, log_path=log_path,
                          process=process)
    wait_until_serving(server)
    return server


def wait_until_serving(server: StudioServer, timeout_s: float = SERVER_START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"The studio exited with code {server.process.returncode} before serving "
                        f"{server.url}. Its output:\n{server.output()}", pytrace=False)
        if answers_http_200(server.url):
            return
        time.sleep(SERVER_POLL_INTERVAL_S)
    stop_studio(server)
    pytest.fail(f"The studio did not answer {server.url} within {timeout_s:.0f} s. Its output:\n"
                f"{server.output()}", pytrace=False)


def answers_http_200(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def stop_studio(server: StudioServer) -> None:
    """Terminate the server's whole process group (harmless if it already stopped)."""
    if server.process.poll() is not None:
        return
    try:
        os.killpg(server.process.pid, signal.SIGTERM)
        server.process.wait(timeout=SERVER_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()
    except ProcessLookupError:
        pass


def studio_with_models(folder: Path, bundled_model_dir: Path, *extra_args: str,
                       tiny_model_dir: Path | None = None, tiny_name: str = "tiny-llama") -> StudioServer:
    """A studio on ``folder/data`` holding the prepared bundled model (hard links) and, when
    given, the tiny test model as ``data/models/<tiny_name>``."""
    import shutil

    from tests.runner_helpers import seed_bundled_model

    seed_bundled_model(folder / "data", bundled_model_dir)
    if tiny_model_dir is not None:
        shutil.copytree(tiny_model_dir, folder / "data" / "models" / tiny_name)
    return start_studio(folder / "data", folder / "server.log", *extra_args)
