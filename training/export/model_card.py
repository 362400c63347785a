"""The model card (``README.md``) of an exported tuned model: the base model, the data, the
settings, the results, and how to prompt it, with a runnable transformers snippet."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from training.core.dataset import PromptTemplate
from training.core.generation import GenerationParams
from training.core.progress import EvalMetrics, StepMetrics
from training.core.template import render_prompt
from training.inference.targets import Target
from training.models import BUNDLED_MODEL

if TYPE_CHECKING:
    from storage.datasets import DatasetVersionInfo
    from storage.jobs import Job

ExportKind = Literal["adapter", "merged", "gguf"]

CHAT_TEMPLATE_FILE = "chat_template.jinja"  # beside the adapter
BUNDLED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the original of the bundled model


@dataclass(frozen=True)
class ModelFacts:
    """A tuned model and what its card says, gathered from the library by
    ``training.export.model_export.gather_facts``."""

    target: Target
    job: "Job"
    dataset: "DatasetVersionInfo"
    eval_dataset: "DatasetVersionInfo | None"  # when evaluation used another dataset
    train_examples: int
    eval_examples: int
    last_step: StepMetrics | None
    last_eval: EvalMetrics | None
    epochs_completed: int


def example_messages(template: PromptTemplate) -> list[dict]:
    """A conversation that prompts the exported model, with placeholder values (model cards)."""
    if template.kind == "chat":
        return [{"role": "system", "content": "Optional instructions"},
                {"role": "user", "content": "Your message"}]
    if len(template.inputs) == 1:
        return [{"role": "user", "content": f"<{template.inputs[0].key}>"}]
    return [{"role": "user", **{item.key: f"<{item.key}>" for item in template.inputs}}]


def generation_settings(params: GenerationParams) -> dict:
    """``GenerationConfig`` fields for the tuned model's defaults: greedy at temperature 0, else
    sampling with its temperature, top-p and top-k (0: no limit). None: not set."""
    greedy = params.greedy
    return {"do_sample": not greedy, "temperature": None if greedy else params.temperature,
            "top_p": None if greedy else params.top_p, "top_k": None if greedy else params.top_k,
            "max_new_tokens": params.max_output_tokens,
            "stop_strings": list(params.stop_sequences) or None}


def model_card(facts: ModelFacts, kind: ExportKind, gguf_file: str = "") -> str:
    """An export's README.md: data, settings, results and how to prompt it (``gguf_file``: the
    GGUF file's name, for a GGUF export)."""
    job, base = facts.job, facts.target.base
    hub_id = BUNDLED_HUB_ID if base.kind == "bundled" else base.path if base.kind == "hub" else ""
    shape = {"adapter": "the LoRA adapter, for peft on top of the base model",
             "merged": "the base model with the LoRA adapter merged into its weights (float32 "
                       "safetensors)",
             "gguf": f"the base model with the LoRA adapter merged into its weights, as the GGUF "
                     f"file `{gguf_file}` for llama.cpp, and a `Modelfile` for Ollama"}[kind]
    library = {"adapter": "peft", "merged": "transformers", "gguf": "gguf"}[kind]
    lines = ["---", f"library_name: {library}",
             *([f"base_model: {json.dumps(hub_id)}"] if hub_id else []), "tags: [lora, tuning-studio]",
             "---", "", f"# {job.display_name}", "", job.description.strip(),
             f"\nTuned with Tuning Studio as `{job.id}`. This folder holds {shape}."]
    if base.kind == "bundled":
        lines.append(f"\nThe base model is the studio's {BUNDLED_MODEL}: {BUNDLED_HUB_ID} dequantized "
                     "from its 4-bit (Q4_1) GGUF file, so it differs slightly from the original.")
    if job.partial:
        lines.append("\nThis is a partial model: the last checkpoint of a cancelled job.")
    held = (f"{facts.eval_examples} ({_version(facts.eval_dataset)})" if facts.eval_dataset else
            f"{facts.eval_examples} (held back from the dataset)" if facts.eval_examples else "0")
    data = [("base model", base.name), ("dataset", _version(facts.dataset)),
            ("training examples", facts.train_examples), ("evaluation examples", held)]
    settings = [(key, json.dumps(value)) for key, value in job.config.to_dict().items()]
    return "\n".join(lines + [
        "", "## Training data", "", _table(data), "", "## Settings", "", _table(settings),
        "", "## Results", "", _table(_results(facts)), "",
        *(_how_to_run_gguf(facts, gguf_file) if kind == "gguf" else _how_to_prompt(facts, kind)),
        "",
    ])


def _results(facts: ModelFacts) -> list[tuple[str, object]]:
    job = facts.job
    rows = [("state", f"{job.gemini_state} ({job.state})"),
            ("final train loss (mean of the last epoch)", job.final_loss),
            ("steps", f"{job.completed_steps} of {job.total_steps}"),
            ("epochs", f"{facts.epochs_completed} of {job.config.epochs}")]
    step, evals = facts.last_step, facts.last_eval
    if step is not None:
        rows += [(f"train loss at step {step.step}", step.loss),
                 (f"train token accuracy at step {step.step}", step.token_accuracy)]
    if evals is not None:
        rows += [(f"eval loss at step {evals.step}", evals.eval_loss),
                 (f"eval token accuracy at step {evals.step}", evals.eval_token_accuracy)]
    return rows + [("created", job.created_at), ("started", job.started_at),
                   ("finished", job.finished_at)]


def _how_to_prompt(facts: ModelFacts, kind: ExportKind) -> list[str]:
    target, template, folder = facts.target, facts.target.template, f"{facts.job.id}-{kind}"
    if template.kind == "chat":
        shape = ("Give a conversation: an optional system message, earlier user and assistant "
                 "turns, and the user message to answer, each `{\"role\": ..., \"content\": ...}`.")
    else:
        keys = template.input_keys
        shape = (f"Give one user message whose `content` is the `{keys[0]}` field (or that carries "
                 "it under its key)." if len(keys) == 1 else "Give one user message carrying the "
                 f"input fields ({', '.join(f'`{k}`' for k in keys)}) under their keys (`content` "
                 "stands for the first).")
        shape += (" Its chat template renders the prompt the model was trained on (the base "
                  "model's chat template is not used):\n\n"
                  + _fenced(render_prompt(template, {k: f"<{k}>" for k in keys})))
    if kind == "merged":
        load = [f"folder = {folder!r}  # the unzipped folder",
                "tokenizer = AutoTokenizer.from_pretrained(folder)",
                "model = AutoModelForCausalLM.from_pretrained(folder)"]
        generate = "output = model.generate(**inputs)  # the tuned defaults: generation_config.json"
    else:
        base = target.base
        named = f"  # the base model: {base.name}" if base.name != base.path else ""
        load = [f"base = {base.path!r}{named}", "tokenizer = AutoTokenizer.from_pretrained(base)",
                f"tokenizer.chat_template = open({folder + '/' + CHAT_TEMPLATE_FILE!r}).read()",
                "model = AutoModelForCausalLM.from_pretrained(base)",
                f"model = PeftModel.from_pretrained(model, {folder!r})"]
        settings = generation_settings(target.defaults)
        settings = [f"{k}={v!r}" for k, v in settings.items() if v is not None]
        settings += ["tokenizer=tokenizer"] if target.defaults.stop_sequences else []
        generate = f"output = model.generate(**inputs, {', '.join(settings)})"
    code = [("from peft import PeftModel\n" if kind == "adapter" else "")
            + "from transformers import AutoModelForCausalLM, AutoTokenizer", "", *load,
            f"messages = {example_messages(template)!r}",
            "inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, "
            "return_dict=True, return_tensors=\"pt\")", generate,
            "print(tokenizer.decode(output[0, inputs[\"input_ids\"].shape[1]:], "
            "skip_special_tokens=True).strip())"]
    limit = target.max_input_tokens
    return ["## How to prompt it", "", shape, "", _fenced("\n".join(code), "python"), "",
            f"Prompts were cut to their last {limit:,} tokens in training; the studio refuses "
            "longer ones." if limit else "", "", "## Generation defaults", "",
            _table([(k, json.dumps(v)) for k, v in target.defaults.to_dict().items()])]


def _how_to_run_gguf(facts: ModelFacts, gguf_file: str) -> list[str]:
    """llama.cpp (through llama-cpp-python) and Ollama, with the tuned defaults."""
    job, template, params = facts.job, facts.target.template, facts.target.defaults
    if template.kind == "chat":
        shape = "Give a conversation; the chat template in the file renders it."
    else:
        keys = template.input_keys
        shape = ("The chat template stored in the file renders the prompt the model was trained "
                 f"on from one user message ({'its text is the input' if len(keys) == 1 else 'the fields under their keys'}):"
                 "\n\n" + _fenced(render_prompt(template, {k: f"<{k}>" for k in keys})))
    settings = {"temperature": params.temperature, "top_p": params.top_p, "top_k": params.top_k,
                "max_tokens": params.max_output_tokens}
    if params.stop_sequences:
        settings["stop"] = list(params.stop_sequences)
    code = ["from llama_cpp import Llama  # pip install llama-cpp-python", "",
            f"llm = Llama(model_path={gguf_file!r}, n_ctx=2048, verbose=False)",
            f"messages = {example_messages(template)!r}",
            "answer = llm.create_chat_completion(messages, "
            + ", ".join(f"{k}={v!r}" for k, v in settings.items()) + ")",
            'print(answer["choices"][0]["message"]["content"])']
    ollama = [f"ollama create {job.id} -f Modelfile", f"ollama run {job.id}"]
    return ["## How to run it", "", shape, "", "With llama.cpp from Python:", "",
            _fenced("\n".join(code), "python"), "",
            "With Ollama, in this folder (the `Modelfile` holds the prompt template, the end "
            "tokens and the tuned defaults):", "", _fenced("\n".join(ollama), "bash"), "",
            "## Generation defaults", "",
            _table([(k, json.dumps(v)) for k, v in params.to_dict().items()])]


def _version(info) -> str:
    return f"{info.name} version {info.version} ({info.example_count} examples)"


def _table(rows) -> str:
    return "\n".join(["| | |", "|---|---|", *(f"| {_cell(k)} | {_cell(v)} |" for k, v in rows)])


def _cell(value) -> str:
    """Numbers to 4 decimals, None empty; escaped for a Markdown table."""
    text = "" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _fenced(text: str, language: str = "") -> str:
    """A Markdown code block that no run of backticks in ``text`` can close early."""
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall("`+", text)), default=0))
    return f"{fence}{language}\n{text}\n{fence}"
