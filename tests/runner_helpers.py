"""Shared by the runner tests: datasets, a stand-in train function for queue mechanics that do
not concern training, and polling helpers. Training behaviour is tested with the real trainer."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Iterator

from training.core.dataset import Dataset, Example, PromptTemplate
from training.core.progress import StepMetrics, TrainResult

REPO = Path(__file__).resolve().parents[1]



def word_dataset(count: int = 40) -> Dataset:
    """``count`` examples of a small task: the word, reversed."""
    words = [f"word{n:02d}" for n in range(count)]
    return Dataset(PromptTemplate(preamble="Reverse the word."),
                   tuple(Example({"input": w}, w[::-1], f"row {i + 1}") for i, w in enumerate(words)))


class RecordingTrain:
    """Stands in for ``trainer.train`` in tests of queue order and bookkeeping: records which
    jobs ran, reports steps, writes a checkpoint folder per epoch like the trainer, and can be
    held at a step (``hold``) so a test can act while it 'trains'."""

    def __init__(self, error: Exception | None = None):
        self.calls: list[Path] = []
        self.error = error
        self.hold = threading.Event()
        self.hold.set()

    def __call__(self, *, base_model, train_set, eval_set, config, output_dir, sink, should_stop,
                 resume_from=None, device=None) -> TrainResult:
        self.calls.append(Path(output_dir))
        if self.error is not None:
            raise self.error
        per_epoch = math.ceil(len(train_set.examples) / config.batch_size)
        total = per_epoch * config.epochs
        first = json.loads((resume_from / "state.json").read_text())["step"] + 1 if resume_from else 1
        sink.on_start(total, per_epoch, first)
        adapter = None
        for step in range(first, total + 1):
            self.hold.wait(10)
            if should_stop():
                return TrainResult("stopped", step - 1, adapter)
            sink.on_step(StepMetrics(step, step / per_epoch, 1.0 / step, 0.5, 8, 1e-3))
            if step % per_epoch == 0:
                epoch = step // per_epoch
                folder = Path(output_dir) / "checkpoints" / f"epoch-{epoch}"
                (folder / "adapter").mkdir(parents=True)
                (folder / "adapter" / "adapter_config.json").write_text("{}")
                (folder / "state.json").write_text(json.dumps({"step": step}))
                adapter = folder / "adapter"
                sink.on_checkpoint(epoch, step, folder)
        final = Path(output_dir) / "adapter"
        final.mkdir(parents=True, exist_ok=True)
        return TrainResult("completed", total, final, final_loss=1.0 / total)


def wait_for(condition, timeout_s: float = 30.0, poll_s: float = 0.02):
    """Poll ``condition()`` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll_s)
    raise TimeoutError(f"condition not met within {timeout_s} s")


# ---- real processes ----

def query(db_path: Path, sql: str, params=()) -> list[tuple]:
    """Read the studio's database the way another process would (no Store, no migrations)."""
    if not db_path.exists():
        return []
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError:  # the tables are not created yet
        return []
    finally:
        conn.close()


def poll(condition, timeout_s: float, process: subprocess.Popen, poll_s: float = 0.02):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process.poll() is not None:
            raise AssertionError(f"the process ended early with {process.returncode}")
        time.sleep(poll_s)
    raise AssertionError(f"not reached within {timeout_s} s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(args: list[str], log: Path) -> subprocess.Popen:
    """``app.py`` as a person starts it in a terminal: Ctrl-C (SIGINT) reaches it even when the
    tests themselves run in the background, where shells start commands with SIGINT ignored."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "app.py", *args], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@contextlib.contextmanager
def api_studio(data_dir: Path, log: Path, api_key: str | None = None) -> Iterator[str]:
    """``app.py`` serving ``data_dir`` (with ``api_key`` when given), once its /v1beta answers:
    its URL."""
    port = free_port()
    key = ["--api-key", api_key] if api_key else []
    process = start_app(["--port", str(port), "--data-dir", str(data_dir), *key], log)
    url = f"http://127.0.0.1:{port}"

    def up():
        request = urllib.request.Request(f"{url}/v1beta/models",
                                         headers={"x-goog-api-key": api_key} if api_key else {})
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        poll(up, timeout_s=120, process=process, poll_s=0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def seed_bundled_model(data_dir: Path, prepared: Path) -> None:
    """Give a fresh data folder the already-prepared bundled model (hard links: instant), so
    the studio does not convert it again for every test server."""
    target = data_dir / "models" / prepared.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(prepared, target, copy_function=_link_or_copy)


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:  # another file system
        shutil.copy2(source, destination)


def claim(store, owner: str):
    """Start the next queued job for ``owner`` as the runner does: find it, then move it to
    running (None when nothing is queued)."""
    job = store.next_queued_job()
    return store.change_job_state(job.id, "start", owner=owner) if job else None
