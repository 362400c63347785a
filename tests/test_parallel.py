"""Data parallel training: the same job with 1 and with 2 worker processes (torchrun, gloo on the
CPU, 2 ranks on this 2-core machine) runs the same steps with loss curves and evaluations that
agree, and the 2-process adapter loads and answers like the 1-process one."""

from __future__ import annotations

import json

import pytest

from storage.db import Store
from tests.runner_helpers import word_dataset
from training.core.config import TuningConfig
from training.core.layout import METRICS_FILE
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
    """(data_dir, {run: job}) for the same job run with 1 process, with 2, and with 2 holding
    half the model each ("fsdp")."""
    data_dir = tmp_path_factory.mktemp("parallel") / "data"
    jobs = {}
    with Store(data_dir) as store:
        version = store.save_dataset("words", word_dataset(40))
        runner = JobRunner(store, data_dir, poll_interval_s=0.05)
        runner.start()
        try:
            for run, processes, shard in ((1, 1, False), (2, 2, False), ("fsdp", 2, True)):
                job = runner.submit(JobRequest(f"Words {run}", "", str(tiny_model_dir), version.id,
                                               TuningConfig(**SETTINGS, processes=processes,
                                                            shard_model=shard)))
                jobs[run] = runner.wait(job.id, timeout_s=300)
        finally:
            runner.stop()
    return data_dir, jobs


@pytest.mark.parametrize("run", [2, "fsdp"])
def test_two_processes_run_the_same_steps_with_the_same_loss_curve(runs, run):
    data_dir, jobs = runs
    assert {job.state for job in jobs.values()} == {"succeeded"}, [j.error for j in jobs.values()]
    with Store(data_dir) as store:
        curves = {n: store.metrics_after(job.id) for n, job in jobs.items()}
        evals = {n: store.job_evals(job.id) for n, job in jobs.items()}
        logs = {n: [line.line for line in store.log_lines(job.id)] for n, job in jobs.items()}
    assert jobs[1].total_steps == jobs[run].total_steps == 12  # 30 training rows / 5, 2 epochs
    assert [m.step for m in curves[1]] == [m.step for m in curves[run]] == list(range(1, 13))
    assert max(abs(a.loss - b.loss) for a, b in zip(curves[1], curves[run])) < LOSS_TOLERANCE
    assert [m.num_predictions for m in curves[1]] == [m.num_predictions for m in curves[run]]
    assert [m.tokens for m in curves[1]] == [m.tokens for m in curves[run]]
    assert [e.step for e in evals[1]] == [e.step for e in evals[run]]
    assert max(abs(a.eval_loss - b.eval_loss) for a, b in zip(evals[1], evals[run])) < LOSS_TOLERANCE
    assert abs(jobs[1].final_loss - jobs[run].final_loss) < LOSS_TOLERANCE
    assert len(logs[1]) + (run == "fsdp") == len(logs[run])  # rank 0 alone reports: no line twice
    metrics = {n: json.loads((data_dir / "tuned" / job.id / METRICS_FILE).read_text())
               for n, job in jobs.items()}
    assert metrics[run]["processes"] == 2 and metrics[run]["sharded"] == (run == "fsdp")
    if run == "fsdp":  # each process holds about half of the weights
        assert 0.45 < metrics[run]["weights_mb"] / metrics[1]["weights_mb"] < 0.55
        assert any(line.startswith("Each of the 2 processes holds its share") for line in logs[run])
    else:
        assert metrics[run]["weights_mb"] == metrics[1]["weights_mb"]


@pytest.mark.parametrize("run", [2, "fsdp"])
def test_the_two_process_adapter_loads_and_answers_as_the_one_process_adapter(runs, run):
    data_dir, jobs = runs
    with Store(data_dir) as store:
        answers = {}
        for n in (1, run):
            target = resolve_target(store, data_dir, jobs[n].id)
            answers[n] = [generate(target, word, cache=ModelCache(precision="fp32"))
                          for word in ("word03", "word17", "hello")]
    assert all(answers[run]) and answers[run] == answers[1]


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


def test_a_sharded_job_cancelled_mid_epoch_resumes_where_it_was(tmp_path, tiny_model_dir):
    """Rank 0 reads the checkpoint, and each rank takes its shards of the adapter weights and
    of the optimizer state: the steps replayed after the checkpoint repeat the interrupted
    run's losses (a lost optimizer state changes them from the second one on)."""
    from tests.runner_helpers import wait_for

    with Store(tmp_path / "data") as store:
        version = store.save_dataset("words", word_dataset(40))
        runner = JobRunner(store, tmp_path / "data", poll_interval_s=0.05)
        runner.start()
        try:
            config = TuningConfig(**{**SETTINGS, "epochs": 8}, processes=2, shard_model=True)
            job = runner.submit(JobRequest("Sharded", "", str(tiny_model_dir), version.id, config))
            wait_for(lambda: (j := store.get_job(job.id)).checkpoint_step
                     and j.completed_steps >= j.checkpoint_step + 3, timeout_s=180)
            runner.cancel(job.id)
            cancelled = runner.wait(job.id, timeout_s=60)
            assert cancelled.state == "cancelled", cancelled.error
            before = {m.step: m.loss for m in store.metrics_after(job.id)}
            runner.resume(job.id)
            done = runner.wait(job.id, timeout_s=300)
        finally:
            runner.stop()
        assert done.state == "succeeded", done.error
        after = {m.step: m.loss for m in store.metrics_after(job.id)}
    replayed = [step for step in before if step > cancelled.checkpoint_step]
    assert len(replayed) >= 3 and sorted(after) == list(range(1, 49))
    assert max(abs(before[step] - after[step]) for step in replayed) < LOSS_TOLERANCE


def test_an_optimizer_state_reads_back_by_position_and_by_name():
    """A job resumed with another layout (sharded <-> whole, as on a machine with another number
    of GPUs) reads the optimizer state the other layout saved, in torch's own formats."""
    import torch
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    from training.tuning.checkpoints import optimizer_by_index, optimizer_by_name

    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    model[0].bias.requires_grad_(False)
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(torch.ones(4, 3)).sum().backward()
    optimizer.step()
    by_index = optimizer.state_dict()
    by_name = optimizer_by_name(by_index, names)
    torch_by_name = get_optimizer_state_dict(model, optimizer)
    assert sorted(by_name["state"]) == sorted(torch_by_name["state"]) == sorted(names)
    assert by_name["param_groups"][0]["params"] == torch_by_name["param_groups"][0]["params"]
    for name in names:
        assert torch.equal(by_name["state"][name]["exp_avg"], torch_by_name["state"][name]["exp_avg"])
    back = optimizer_by_index(torch_by_name, names)
    assert back["param_groups"][0]["params"] == by_index["param_groups"][0]["params"]
    optimizer.load_state_dict(back)  # torch accepts it
    assert optimizer_by_index(by_index, names) is by_index and optimizer_by_name(by_name, names) is by_name
