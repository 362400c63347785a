"""Answering with a base or tuned model, the prompt rendered by the same template function as in
training. Minimal for now: greedy decoding (the playground issue adds streaming, sampling,
stop sequences and a model cache)."""

from __future__ import annotations

from pathlib import Path

from training.dataset import PromptTemplate
from training.models import ModelRef, load_model, load_tokenizer
from training.template import render_prompt


def load_for_inference(base: ModelRef, adapter_dir: Path | None = None):
    """(model, tokenizer): the base model, with the LoRA adapter applied when given."""
    model = load_model(base)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir))
    model.eval()
    return model, load_tokenizer(base)


def answer(model, tokenizer, template: PromptTemplate, fields, max_new_tokens: int = 64) -> str:
    """Greedy answer to one example's input fields, prompted exactly as in training."""
    import torch

    prompt = render_prompt(template, fields, tokenizer)
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()
