"""Data parallel training: the same job with 1 and with 2 worker processes (torchrun, gloo on the
CPU, 2 ranks on this 2-core machine) runs the same steps with loss curves and evaluations that
agree, and the 2-process adapter loads and answers like the 1-process one."""

from __future__ import annotations

import pytest

from storage.db import Store
from tests.runner_helpers import word_dataset
from training.core.config import TuningConfig
from training.inference.engine import generate, resolve_target
from training.inference.model_cache import ModelCache
from training.jobs.runner import JobRequest, JobRunner
from training.jobs.workers import processes_per_node

LOSS_TOLERANCE = 1e-3
"""Largest difference between the two curves' step losses (float sums in another order)."""

SETTINGS = dict(epochs=2, batch_size=5, learning_rate=0.01, lora_rank=4, max_input_tokens=64,
                max_output_tokens=16, precision="fp32", eval_rows=10, eval_interval_steps=3)
"""Batch 5 does not divide by 2 processes: ranks take 3 and 2 examples of each batch."""


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir):
    """(data_dir, {processes: job}) for the same job run with 1 and with 2 processes."""
    data_dir = tmp_path_factory.mktemp("parallel") / "data"
    jobs = {}
    with Store(data_dir) as store:
        version = store.save_dataset("words", word_dataset(40))
        runner = JobRunner(store, data_dir, poll_interval_s=0.05)
        runner.start()
        try:
            for processes in (1, 2):
                job = runner.submit(JobRequest(f"Words {processes}", "", str(tiny_model_dir),
                                               version.id,
                                               TuningConfig(**SETTINGS, processes=processes)))
                jobs[processes] = runner.wait(job.id, timeout_s=300)
        finally:
            runner.stop()
    return data_dir, jobs


def test_two_processes_run_the_same_steps_with_the_same_loss_curve(runs):
    data_dir, jobs = runs
    assert {job.state for job in jobs.values()} == {"succeeded"}, [j.error for j in jobs.values()]
    with Store(data_dir) as store:
        curves = {n: store.metrics_after(job.id) for n, job in jobs.items()}
        evals = {n: store.job_evals(job.id) for n, job in jobs.items()}
        logs = {n: [line.line for line in store.log_lines(job.id)] for n, job in jobs.items()}
    assert jobs[1].total_steps == jobs[2].total_steps == 12  # 30 training rows / 5, 2 epochs
    assert [m.step for m in curves[1]] == [m.step for m in curves[2]] == list(range(1, 13))
    assert max(abs(a.loss - b.loss) for a, b in zip(curves[1], curves[2])) < LOSS_TOLERANCE
    assert [m.num_predictions for m in curves[1]] == [m.num_predictions for m in curves[2]]
    assert [m.tokens for m in curves[1]] == [m.tokens for m in curves[2]]
    assert [e.step for e in evals[1]] == [e.step for e in evals[2]]
    assert max(abs(a.eval_loss - b.eval_loss) for a, b in zip(evals[1], evals[2])) < LOSS_TOLERANCE
    assert abs(jobs[1].final_loss - jobs[2].final_loss) < LOSS_TOLERANCE
    assert len(logs[1]) == len(logs[2])  # rank 0 alone reports: no line twice


def test_the_two_process_adapter_loads_and_answers_as_the_one_process_adapter(runs):
    data_dir, jobs = runs
    with Store(data_dir) as store:
        answers = {}
        for n, job in jobs.items():
            target = resolve_target(store, data_dir, job.id)
            answers[n] = [generate(target, word, cache=ModelCache(precision="fp32"))
                          for word in ("word03", "word17", "hello")]
    assert all(answers[2]) and answers[2] == answers[1]


def test_zero_processes_means_one_per_visible_gpu_else_one():
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert processes_per_node(0) == max(1, gpus)
    assert processes_per_node(0, "cpu") == 1
    assert processes_per_node(3) == 3


def test_two_machines_train_a_job_together(tmp_path, tiny_model_dir, runs):
    """The studio's machine (node 0, a runner with two nodes) and a second machine running
    `app.py worker` (here a second data folder on this machine, meeting over loopback) train one
    job: the curve is the one-process curve, and the second machine writes nothing."""
    import subprocess
    import sys

    from tests.runner_helpers import REPO, free_port
    from training.jobs.workers import Nodes

    endpoint = f"127.0.0.1:{free_port()}"
    second = tmp_path / "second"
    with open(tmp_path / "second.log", "wb") as log:
        helper = subprocess.Popen(
            [sys.executable, "app.py", "worker", "--nnodes", "2", "--node-rank", "1",
             "--rdzv-endpoint", endpoint, "--nproc-per-node", "1", "--device", "cpu",
             "--jobs", "1", "--data-dir", str(second)], cwd=REPO, stdout=log,
            stderr=subprocess.STDOUT)
    data_dir = tmp_path / "head"
    try:
        with Store(data_dir) as store:
            version = store.save_dataset("words", word_dataset(40))
            runner = JobRunner(store, data_dir, poll_interval_s=0.05, nodes=Nodes(2, endpoint),
                               device="cpu")
            runner.start()
            try:
                job = runner.submit(JobRequest("Two machines", "", str(tiny_model_dir),
                                               version.id, TuningConfig(**SETTINGS, processes=1)))
                done = runner.wait(job.id, timeout_s=300)
            finally:
                runner.stop()
            assert done.state == "succeeded", done.error
            curve = store.metrics_after(done.id)
        assert helper.wait(timeout=60) == 0, (tmp_path / "second.log").read_text()[-2000:]
    finally:
        helper.kill()
    with Store(runs[0]) as store:
        alone = store.metrics_after(runs[1][1].id)
    assert [m.step for m in curve] == [m.step for m in alone]
    assert max(abs(a.loss - b.loss) for a, b in zip(curve, alone)) < LOSS_TOLERANCE
    assert not (second / "tuned").exists()
