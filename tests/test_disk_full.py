"""A full disk, for real: the data folder on a small tmpfs filled to the last byte.

A job that runs out of space fails saying so and can be resumed once there is room; storage
writes and the API answer "No space left in <folder> (N MB free)" (507 RESOURCE_EXHAUSTED over
HTTP) and keep what was there; a failed preparation of the bundled model is remembered until
something changes. Mounting a tmpfs needs root (or password-less sudo): without it these tests
fail, they are not skipped."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from storage.db import Store
from tests.runner_helpers import wait_for, word_dataset
from tests.studio_process import start_studio, stop_studio
from training import models
from training.core.config import TuningConfig
from training.core.disk_space import is_disk_full, no_space
from training.core.errors import ModelError, StorageFullError
from training.core.generation import (
    GenerationParams, load_generation_defaults, save_generation_defaults,
)
from training.jobs.runner import JobRequest, JobRunner
from training.models import bundled

FAST = dict(batch_size=4, learning_rate=0.01, lora_rank=4, max_input_tokens=64,
            max_output_tokens=16, precision="fp32")
FILLER = "filler.bin"


def mount_tmpfs(folder: Path, size_mb: int, *, remount: bool = False) -> None:
    options = f"{'remount,' if remount else ''}size={size_mb}m"
    command = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)]
    if os.geteuid() != 0:
        command = ["sudo", "-n", *command]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"These tests mount a small tmpfs and need root or password-less sudo: "
                    f"{' '.join(command)} said {done.stderr.strip()!r}", pytrace=False)


@pytest.fixture
def small_disk(tmp_path):
    """A real 24 MB file system, unmounted afterwards."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mount_tmpfs(folder, 24)
    yield folder
    subprocess.run(["umount", "-l", str(folder)] if os.geteuid() == 0
                   else ["sudo", "-n", "umount", "-l", str(folder)], check=False)


def fill(disk: Path) -> Path:
    """Write a file until the disk refuses another byte; returns it (delete it to make room)."""
    path = disk / FILLER
    block = b"\0" * 2**20
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (2**20, 4096, 1):
            try:
                while os.write(handle, block[:size]):
                    pass
            except OSError:
                continue
    finally:
        os.close(handle)
    assert shutil.disk_usage(disk).free == 0
    return path


# ---- the words a full disk uses -----------------------------------------------------------------


def test_torchs_error_on_a_full_disk_is_recognised_and_nothing_half_written_stays(small_disk):
    import torch

    from training.tuning.checkpoints import write_folder_atomic

    fill(small_disk)
    with pytest.raises(RuntimeError) as caught:
        write_folder_atomic(small_disk / "checkpoint",
                            lambda folder: torch.save(torch.zeros(2**18), folder / "state.pt"))
    assert is_disk_full(caught.value)
    assert sorted(p.name for p in small_disk.iterdir()) == [FILLER]
    assert str(no_space(small_disk)) == (f"No space left in {small_disk} (0 MB free): free "
                                         "some space and try again.")


def test_other_errors_are_not_taken_for_a_full_disk():
    assert not is_disk_full(FileNotFoundError(2, "No such file or directory"))
    assert not is_disk_full(RuntimeError("size mismatch for lm_head.weight"))


# ---- storage ------------------------------------------------------------------------------------


def test_a_store_write_on_a_full_disk_names_the_folder_and_keeps_what_was_saved(small_disk):
    data = small_disk / "data"
    with Store(data) as store:
        store.save_dataset("words", word_dataset(20))
        filler = fill(small_disk)
        with pytest.raises(StorageFullError) as caught:
            store.save_dataset("more words", word_dataset(40))
        assert str(caught.value) == (f"No space left in {data} (0 MB free): free some space and "
                                     "try again.")
        with pytest.raises(StorageFullError):
            store.save_upload("rows.csv", b"input,output\n" * 2000, "csv")
        assert [d.name for d in store.list_datasets()] == ["words"]
        assert store.get_version("words").dataset == word_dataset(20)
        filler.unlink()
        store.save_dataset("more words", word_dataset(40))
        assert sorted(d.name for d in store.list_datasets()) == ["more words", "words"]


def test_saving_generation_defaults_on_a_full_disk_keeps_the_old_ones(small_disk):
    model = small_disk / "tuned" / "m"
    save_generation_defaults(model, GenerationParams(temperature=0.5))
    fill(small_disk)
    with pytest.raises(StorageFullError, match=rf"^No space left in {model} \(0 MB free\)"):
        save_generation_defaults(model, GenerationParams(temperature=0.9))
    assert load_generation_defaults(model).temperature == 0.5
    assert sorted(p.name for p in model.iterdir()) == ["generation.json"]


# ---- a job that runs out of space ---------------------------------------------------------------


def test_a_job_that_runs_out_of_space_fails_saying_so_and_resumes_once_there_is_room(
        small_disk, tiny_model_dir):
    from training.tuning.trainer import train

    data = small_disk / "data"
    filled = threading.Event()

    def train_on_a_disk_that_fills(**kwargs):
        if not filled.is_set():  # the first run: the disk fills as training starts
            filled.set()
            fill(small_disk)
        return train(**kwargs)

    with Store(data) as store:
        version = store.save_dataset("words", word_dataset(40))
        runner = JobRunner(store, data, train_on_a_disk_that_fills, poll_interval_s=0.05)
        job = runner.submit(JobRequest("Reverser", "", str(tiny_model_dir), version.id,
                                       TuningConfig(**FAST, epochs=2)))
        runner.start()
        try:
            wait_for(filled.is_set)
            # Not even the failure can be written yet: the runner keeps it and stays alive.
            wait_for(lambda: runner.current_job_id is None and runner._thread.is_alive())
            assert store.get_job(job.id).state == "running"
            (small_disk / FILLER).unlink()
            failed = runner.wait(job.id, timeout_s=30)
            assert failed.state == "failed"
            assert failed.error.startswith(f"No space left in {data} (")
            assert failed.error.endswith("MB free): free some space, then resume the job.")
            runner.resume(job.id)
            done = runner.wait(job.id, timeout_s=120)
            assert done.state == "succeeded"
            assert (data / done.result_dir / "adapter_config.json").is_file()
        finally:
            runner.stop()


# ---- the bundled model's preparation ------------------------------------------------------------


def test_a_failed_preparation_is_remembered_until_the_disk_has_more_room(small_disk):
    data = small_disk / "data"
    with pytest.raises(ModelError) as first:
        models.prepare_bundled_model(data)
    message = str(first.value)
    assert message.startswith(f"No space left in {data / 'models'} (")
    assert "needs about 700 MB there; free some space, then try again." in message
    assert [p.name for p in (data / "models").iterdir()] == [".SmolLM2-135M-Instruct.lock"]

    with pytest.raises(ModelError) as again:  # nothing changed: no new attempt
        models.prepare_bundled_model(data)
    assert str(again.value) == message and again.value.__cause__ is first.value

    mount_tmpfs(small_disk, 24 + bundled.PREPARE_RETRY_MB, remount=True)
    with pytest.raises(ModelError) as retried:  # 100 MB more: tried again (still too small)
        models.prepare_bundled_model(data)
    assert retried.value is not first.value and retried.value.__cause__ is not first.value
    assert str(retried.value).startswith(f"No space left in {data / 'models'} (")


# ---- over HTTP: 507 RESOURCE_EXHAUSTED, and the studio keeps serving ----------------------------


@pytest.fixture
def full_studio(small_disk, tmp_path, bundled_model_dir, tiny_model_dir):
    """A studio whose data folder is on the small disk (the models linked in from outside)."""
    data = small_disk / "data"
    (data / "models").mkdir(parents=True)
    (data / "models" / bundled_model_dir.name).symlink_to(bundled_model_dir)
    (data / "models" / "tiny-llama").symlink_to(tiny_model_dir)
    studio = start_studio(data, tmp_path / "server.log")
    yield studio
    stop_studio(studio)


def create_body(name: str) -> dict:
    examples = [{"textInput": e.fields["input"], "output": e.output} for e in word_dataset(20).examples]
    return {"displayName": name, "baseModel": "models/tiny-llama",
            "tuningTask": {"hyperparameters": {"epochCount": 1, "batchSize": 4},
                           "trainingData": {"examples": {"examples": examples}}}}


def test_on_a_full_disk_the_api_answers_507_and_delete_makes_room(full_studio, small_disk):
    with httpx.Client(base_url=full_studio.url + "v1beta/", timeout=60) as http:
        made = http.post("tunedModels", params={"tunedModelId": "kept"}, json=create_body("Kept"))
        assert made.status_code == 200, made.text
        wait_for(lambda: http.get("tunedModels/kept").json()["state"] == "ACTIVE", timeout_s=120)
        fill(small_disk)

        refused = [
            http.post("tunedModels", params={"tunedModelId": "more"}, json=create_body("More")),
            http.patch("tunedModels/kept", params={"updateMask": "description"},
                       json={"description": "a new description"}),
            http.patch("tunedModels/kept", params={"updateMask": "temperature"},
                       json={"temperature": 0.3}),
        ]
        for response in refused:
            assert response.status_code == 507, response.text
            error = response.json()["error"]
            assert error["status"] == "RESOURCE_EXHAUSTED" and error["code"] == 507
            assert error["message"].startswith(f"No space left in {full_studio.data_dir}")
            assert "free some space and try again." in error["message"]
        assert "Traceback" not in response.text

        kept = http.get("tunedModels/kept").json()
        assert kept.get("description", "") == "" and kept["temperature"] != 0.3
        assert http.get("tunedModels/more").status_code == 404

        # Deleting a model removes its files first, so it works with 0 bytes free.
        assert http.delete("tunedModels/kept").status_code == 200
        assert http.get("tunedModels/kept").status_code == 404
        assert http.get("tunedModels").status_code == 200
    assert "Traceback" not in full_studio.output()
