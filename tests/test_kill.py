"""The studio process is killed with SIGKILL mid-training, started again, and the job resumes from
its last checkpoint and finishes with one continuous loss curve. Real processes, real trainer,
the tiny model."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from tests.runner_helpers import free_port, poll, query, start_app, word_dataset

EPOCHS = 3
EXAMPLES = 40
BATCH_SIZE = 2
STEPS_PER_EPOCH = EXAMPLES // BATCH_SIZE


@pytest.fixture
def words_file(tmp_path) -> Path:
    path = tmp_path / "words.jsonl"
    rows = [{"text_input": e.fields["input"], "output": e.output} for e in word_dataset(EXAMPLES).examples]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_a_job_killed_mid_training_resumes_at_studio_start_with_a_continuous_curve(
        tmp_path, tiny_model_dir, bundled_model_dir, words_file):
    data = tmp_path / "data"
    (data / "models").mkdir(parents=True)
    (data / "models" / bundled_model_dir.name).symlink_to(bundled_model_dir)  # nothing to convert
    db, log = data / "studio.db", tmp_path / "processes.log"
    tune = start_app(["tune", "--data", str(words_file), "--name", "Survivor", "--data-dir", str(data),
                  "--model", str(tiny_model_dir), "--epochs", str(EPOCHS), "--batch-size",
                  str(BATCH_SIZE), "--learning-rate", "0.01", "--lora-rank", "4"], log)
    try:
        killed_at = poll(lambda: [row[0] for row in query(
            db, "SELECT completed_steps FROM jobs WHERE checkpoint_epoch = 1 AND completed_steps "
                ">= checkpoint_step + 3")], timeout_s=60, process=tune)[0]
        tune.send_signal(signal.SIGKILL)
        tune.wait(10)
    finally:
        tune.kill()
    before = dict(query(db, "SELECT step, loss FROM job_metrics"))
    assert query(db, "SELECT state FROM jobs") == [("running",)]  # as the dead process left it
    assert killed_at < EPOCHS * STEPS_PER_EPOCH

    studio = start_app(["serve", "--data-dir", str(data), "--port", str(free_port())], log)
    try:
        poll(lambda: query(db, "SELECT 1 FROM jobs WHERE state = 'succeeded'"), timeout_s=90,
             process=studio, poll_s=0.2)
    finally:
        studio.send_signal(signal.SIGINT)
        try:
            studio.wait(20)
        except subprocess.TimeoutExpired:
            studio.kill()

    curve = query(db, "SELECT step, loss FROM job_metrics ORDER BY step")
    assert [step for step, _ in curve] == list(range(1, EPOCHS * STEPS_PER_EPOCH + 1))
    checkpoint = STEPS_PER_EPOCH
    assert [loss for step, loss in curve if step <= checkpoint] == [before[s] for s in range(1, checkpoint + 1)]
    for step in range(checkpoint + 1, killed_at + 1):  # the steps run again from the checkpoint
        assert dict(curve)[step] == pytest.approx(before[step], rel=1e-3, abs=1e-3)
    lines = [line for (line,) in query(db, "SELECT line FROM job_log ORDER BY seq")]
    assert (f"The studio stopped while this job was running; resuming from the epoch 1 checkpoint "
            f"(step {checkpoint}).") in lines
