"""Shared by the inference tests: a tuned model made by the real runner and trainer, and the plain
transformers + peft reference the studio's answers are compared with."""

from __future__ import annotations

from pathlib import Path

from storage.db import Store
from tests.runner_helpers import word_dataset
from training.core.config import TuningConfig
from training.jobs.runner import JobRequest, JobRunner

FAST = dict(epochs=2, batch_size=4, learning_rate=0.01, lora_rank=4, max_input_tokens=64,
            max_output_tokens=16, precision="fp32")
"""Tiny-model settings: 40 examples are 10 steps per epoch, 2 epochs (checkpoints epoch-1, -2)."""


def tune_words(data_dir: Path, base_model: Path, name: str = "Reverser", **config) -> str:
    """Tune ``base_model`` on the word-reversal task with the real runner; the tuned model's id."""
    with Store(data_dir) as store:
        version = store.save_dataset("words", word_dataset(40))
        runner = JobRunner(store, data_dir, poll_interval_s=0.05)
        runner.start()
        try:
            job = runner.submit(JobRequest(name, "reverses words", str(base_model), version.id,
                                           TuningConfig(**{**FAST, **config})))
            job = runner.wait(job.id, timeout_s=120)
        finally:
            runner.stop()
        assert job.state == "succeeded", job.error
        return job.id


def plain_greedy(base_dir: Path, adapter_dir: Path | None, prompt: str, max_new_tokens: int) -> str:
    """Greedy answer from transformers + peft loaded directly (adapter unmerged, float32)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(base_dir, local_files_only=True, dtype=torch.float32)
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(model, str(adapter_dir))
    model.eval()
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.eos_token_id)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).lstrip()
