"""`python app.py tune`: the progress line, and real processes on the tiny model."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.runner_helpers import REPO, poll, query, start_app
from training.cli.tune import format_duration, progress_line


@pytest.mark.parametrize("args, line", [
    ((40, 190, 1.05, 1.2344, 80), "[####................] step 40/190 epoch 1.05 loss 1.234 ETA 1m20s"),
    ((0, 10, 0.0, 9.0, None), "[....................] step 0/10 epoch 0.00 loss 9.000 ETA ?"),
    ((10, 10, 2.0, 0.5, 0), "[####################] step 10/10 epoch 2.00 loss 0.500 ETA 0s"),
])
def test_progress_line(args, line):
    assert progress_line(*args) == line


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (42.4, "42s"), (80, "1m20s"), (3599, "59m59s"),
                                           (7500, "2h05m")])
def test_durations_read_like_a_clock(seconds, text):
    assert format_duration(seconds) == text


def words(path: Path, rows: int) -> Path:
    path.write_text("".join(json.dumps({"text_input": f"word{n:02d}", "output": f"{n:02d}drow"}) + "\n"
                            for n in range(rows)), encoding="utf-8")
    return path


def tune(tmp_path, data_file: Path, tiny_model_dir, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "app.py", "tune", "--data", str(data_file), "--name", "Words",
         "--data-dir", str(tmp_path / "data"), "--model", str(tiny_model_dir), "--lora-rank", "4",
         *extra], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_tune_trains_into_the_library_and_exits_0(tmp_path, tiny_model_dir):
    result = tune(tmp_path, words(tmp_path / "words.jsonl", 24), tiny_model_dir, "--epochs", "1",
                  "--batch-size", "8")
    assert result.returncode == 0, result.stderr
    assert "step 3/3 epoch 1.00" in result.stderr
    assert result.stdout.startswith("Tuned model 'words' is ready (final loss ")
    rows = query(tmp_path / "data" / "studio.db", "SELECT state, completed_steps FROM jobs")
    assert rows == [("succeeded", 3)]


def test_tune_refuses_a_file_with_errors_and_prints_the_report(tmp_path, tiny_model_dir):
    result = tune(tmp_path, words(tmp_path / "few.jsonl", 5), tiny_model_dir)
    assert result.returncode == 1
    assert "error   The dataset has 5 examples; tuning needs at least 20. Add 15 more." in result.stderr
    assert not (tmp_path / "data" / "studio.db").exists() or query(
        tmp_path / "data" / "studio.db", "SELECT count(*) FROM jobs") == [(0,)]


def test_ctrl_c_cancels_the_job_cleanly_and_exits_130(tmp_path, tiny_model_dir):
    data_file, db = words(tmp_path / "words.jsonl", 40), tmp_path / "data" / "studio.db"
    process = start_app(["tune", "--data", str(data_file), "--name", "Words", "--data-dir",
                     str(tmp_path / "data"), "--model", str(tiny_model_dir), "--epochs", "1000",
                     "--batch-size", "1"], tmp_path / "tune.log")  # 40,000 steps: never done first
    poll(lambda: query(db, "SELECT 1 FROM jobs WHERE completed_steps >= 2"), 60, process)
    process.send_signal(signal.SIGINT)
    assert process.wait(90) == 130  # a busy machine may take a while to stop the step
    state, partial, epoch = query(db, "SELECT state, partial, checkpoint_epoch FROM jobs")[0]
    assert state == "cancelled"
    assert partial == (epoch is not None)  # a checkpoint written before Ctrl-C is kept, labelled
    assert "Cancelling the job at the next step" in (tmp_path / "tune.log").read_text()
