"""Download a tuned model: its LoRA adapter (the PEFT folder) or the adapter merged into its base
model's weights (a folder ``AutoModelForCausalLM.from_pretrained`` loads), zipped into
``<data_dir>/exports/`` (``training.archive.zip_folder``) with its prompt template and a model card.

A structured prompt is raw text in training (``training.template.render_prompt``), not the base
model's chat template; the export carries it as the chat template, so that
``tokenizer.apply_chat_template([{"role": "user", "content": VALUE}], add_generation_prompt=True)``
is the studio's prompt for one input field. With several, the user message carries each field
under its key (``{"role": "user", "question": ..., "context": ...}``; ``content`` stands for the
first field). A chat model keeps its base model's chat template, which training used (or, where
there is none, the studio's plain ``role: text`` turns as one).
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import tempfile
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Literal

from training.archive import zip_folder
from training.atomic import write_file_atomic
from training.dataset import PromptTemplate
from training.errors import ModelError
from training.generation import GenerationParams
from training.inference import eos_token_ids
from training.model_cache import LoadedModel
from training.models import BUNDLED_MODEL, load_model, load_tokenizer
from training.progress import EvalMetrics, StepMetrics
from training.targets import Target, resolve_target
from training.template import render_prompt

if TYPE_CHECKING:
    from storage.datasets import DatasetVersionInfo
    from storage.jobs import Job

ExportKind = Literal["adapter", "merged"]

EXPORTS_DIR_NAME = "exports"
TEMPLATE_FILE = "template.json"  # beside the adapter, as in the tuned model's folder
MERGED_TEMPLATE_FILE = "prompt_template.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"  # beside the adapter
GENERATION_FILE = "generation.json"
CARD_FILE = "README.md"
STALE_STAGING_S = 6 * 3600  # a staging folder this old is a crashed export's (a merge takes minutes)
_STAGING_PREFIX = ".partial-export-"
BUNDLED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the original of the bundled model


@dataclass(frozen=True)
class ModelFacts:
    """A tuned model and what its card says, gathered from the library by ``gather_facts``."""

    target: Target
    job: "Job"
    dataset: "DatasetVersionInfo"
    eval_dataset: "DatasetVersionInfo | None"  # when evaluation used another dataset
    train_examples: int
    eval_examples: int
    last_step: StepMetrics | None
    last_eval: EvalMetrics | None
    epochs_completed: int


def exports_dir(data_dir: Path) -> Path:
    return Path(data_dir) / EXPORTS_DIR_NAME


def export_adapter(store, data_dir: Path, job_id: str) -> Path:
    """``<data_dir>/exports/<id>-adapter.zip`` (see ``save_adapter``)."""
    return _export(store, data_dir, job_id, "adapter", save_adapter)


def export_merged(store, data_dir: Path, job_id: str) -> Path:
    """``<data_dir>/exports/<id>-merged.zip`` (see ``save_merged``); seconds to minutes."""
    return _export(store, data_dir, job_id, "merged", save_merged)


def _export(store, data_dir: Path, job_id: str, kind: ExportKind,
            save: Callable[[ModelFacts, Path], None]) -> Path:
    facts = gather_facts(store, data_dir, job_id)
    name = f"{facts.job.id}-{kind}"
    with _staging(data_dir) as folder:
        save(facts, folder)
        return zip_folder(folder, exports_dir(data_dir) / f"{name}.zip", name)


def save_adapter(facts: ModelFacts, folder: Path) -> None:
    """Into ``folder``: the PEFT adapter, ``template.json``, ``generation.json``, the chat
    template that renders the prompt for the base tokenizer, and the model card."""
    target = facts.target
    chat_template = chat_template_for(target.template, load_tokenizer(target.base).chat_template)
    shutil.copytree(target.adapter_dir, folder, dirs_exist_ok=True)
    _write(folder / TEMPLATE_FILE, target.template.to_dict())
    _write(folder / GENERATION_FILE, target.defaults.to_dict())
    _write(folder / CHAT_TEMPLATE_FILE, chat_template)
    _write(folder / CARD_FILE, model_card(facts, "adapter"))


def save_merged(facts: ModelFacts, folder: Path) -> None:
    """Into ``folder``: the adapter merged into the base model in float32 (safetensors), the
    tokenizer with the prompt as its chat template, a generation config holding the tuned
    model's defaults, ``prompt_template.json`` and the model card."""
    target = facts.target
    tokenizer = load_tokenizer(target.base)
    model = _merged_model(target)
    model.generation_config = _generation_config(model, tokenizer, target.defaults)
    model.save_pretrained(folder)
    _save_tokenizer(tokenizer, folder, chat_template_for(target.template, tokenizer.chat_template))
    _write(folder / MERGED_TEMPLATE_FILE, target.template.to_dict())
    _write(folder / CARD_FILE, model_card(facts, "merged"))


def gather_facts(store, data_dir: Path, job_id: str) -> ModelFacts:
    """Raises NotFoundError for an unknown id, and ModelError saying what to do when the job has
    no adapter yet."""
    data_dir, job = Path(data_dir), store.get_job(job_id)
    adapter = job.path(data_dir, job.result_dir)
    if adapter is None or not (adapter / "adapter_config.json").is_file():
        raise ModelError(
            f"The tuned model '{job.id}' has no adapter to download yet (it is {job.gemini_state}, "
            f"{job.state}): wait until it is ACTIVE, then download it." if not job.is_final else
            f"The tuned model '{job.id}' has no adapter to download (it is {job.state} and kept no "
            "checkpoint): tune it again.")
    target = resolve_target(store, data_dir, job.id)
    dataset, eval_dataset = store.dataset_version_info(job.dataset_version_id), None
    if job.eval_dataset_version_id is not None:
        eval_dataset = store.dataset_version_info(job.eval_dataset_version_id)
        train, held = dataset.example_count, eval_dataset.example_count
    else:  # training.batching.split_eval holds eval_rows back from the dataset
        held = job.config.eval_rows if job.config.eval_rows < dataset.example_count else 0
        train = dataset.example_count - held
    steps = store.metrics_after(job.id, max(job.completed_steps - 1, 0))
    evals = store.job_evals(job.id)
    epochs = max((s.epoch for s in store.job_snapshots(job.id)), default=0)
    return ModelFacts(target, job, dataset, eval_dataset, train, held,
                      steps[-1] if steps else None, evals[-1] if evals else None, epochs)


# --- the prompt as a chat template ------------------------------------------------------------


PLAIN_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- message['role'] ~ ': ' ~ (message['content'] | trim) ~ '\\n' -}}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- 'assistant:' -}}{%- endif -%}")
"""The studio's turns for a base model without a chat template (``template._chat_prefix``)."""


def chat_template_for(template: PromptTemplate, base_chat_template: str | None) -> str:
    """The Jinja chat template that renders ``template``'s prompts as the studio does."""
    if template.kind == "chat":
        return base_chat_template or PLAIN_CHAT_TEMPLATE
    return _structured_chat_template(template)


def _literal(text: str) -> str:
    """A Jinja string literal whose value is ``text``: Jinja reads string literals with Python's
    escapes, of which JSON's (non-ASCII kept as it is) are a subset, so nothing in ``text`` can
    become template syntax."""
    return json.dumps(text, ensure_ascii=False)


def _structured_chat_template(template: PromptTemplate) -> str:
    """The last user message's fields rendered as ``render_prompt`` does; an assistant message
    after it is rendered as in training (`` answer`` and the EOS token)."""
    needs = _literal("Give a user message with the input fields " + ", ".join(template.input_keys))
    lines = [
        "{%- set ns = namespace(user=none, answer=none) -%}",
        "{%- for message in messages -%}",
        "{%- if message['role'] == 'user' -%}{%- set ns.user = message -%}{%- set ns.answer = none -%}",
        "{%- elif message['role'] == 'assistant' -%}{%- set ns.answer = message -%}{%- endif -%}",
        "{%- endfor -%}",
        "{%- if ns.user is none -%}{{- raise_exception(" + needs + ") -}}{%- endif -%}",
    ]
    if template.preamble.strip():
        lines.append("{{- " + _literal(template.preamble.strip() + "\n\n") + " -}}")
    for position, item in enumerate(template.inputs):
        key, fallback = _literal(item.key), "ns.user['content']" if position == 0 else "''"
        lines.append(f"{{%- set value = ns.user[{key}] if ns.user[{key}] is defined else "
                     f"({fallback} if {fallback} is defined else '') -%}}")
        prefix = _literal(f"{item.label} " if item.label else "")
        lines.append(f"{{{{- {prefix} ~ (value if value else '') ~ {_literal(chr(10))} -}}}}")
    return "\n".join(lines + [
        "{%- if add_generation_prompt or ns.answer is not none -%}{{- "
        + _literal(template.output_label) + " -}}{%- endif -%}",
        "{%- if ns.answer is not none -%}{{- " + _literal(" " if template.output_label else "")
        + " ~ ns.answer['content'] ~ (eos_token if eos_token is defined else '') -}}{%- endif -%}",
    ])


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


def _generation_config(model, tokenizer, params: GenerationParams):
    """The base model's generation config with the tuned defaults and the studio's end tokens."""
    eos = eos_token_ids(LoadedModel(model, tokenizer, 0, "", "float32", "cpu"))
    config = copy.deepcopy(model.generation_config)
    config.update(**generation_settings(params), eos_token_id=eos[0] if len(eos) == 1 else eos)
    if config.pad_token_id is None:
        config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    config._from_model_config = False  # generate() must not rebuild it from config.json
    return config


# --- the model card ---------------------------------------------------------------------------


def model_card(facts: ModelFacts, kind: ExportKind) -> str:
    """An export's README.md: data, settings, results and how to prompt it."""
    job, base = facts.job, facts.target.base
    hub_id = BUNDLED_HUB_ID if base.kind == "bundled" else base.path if base.kind == "hub" else ""
    shape = ("the LoRA adapter, for peft on top of the base model" if kind == "adapter" else
             "the base model with the LoRA adapter merged into its weights (float32 safetensors)")
    lines = ["---", f"library_name: {'peft' if kind == 'adapter' else 'transformers'}",
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
        *_how_to_prompt(facts, kind), "",
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


# --- files ------------------------------------------------------------------------------------


def _merged_model(target: Target):
    """The base model in float32 with the adapter merged into its weights."""
    from peft import PeftModel

    model = load_model(target.base, dtype="float32")
    try:
        model = PeftModel.from_pretrained(model, str(target.adapter_dir))
    except (OSError, ValueError, KeyError) as error:
        line = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise ModelError(f"The adapter of {target.label} in {target.adapter_dir} cannot be applied to "
                         f"the base model {target.base.name} ({line}): tune the model again.") from error
    return model.merge_and_unload().eval()


def _save_tokenizer(tokenizer, folder: Path, chat_template: str) -> None:
    """The base tokenizer saved with ``chat_template`` (the shared tokenizer is not changed)."""
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(folder)
    saved = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    saved.chat_template = chat_template
    saved.save_pretrained(folder)


@contextmanager
def _staging(data_dir: Path) -> Iterator[Path]:
    """A hidden temporary folder in the exports folder, removed afterwards (crashed exports' first)."""
    root = exports_dir(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    for leftover in root.glob(f"{_STAGING_PREFIX}*"):
        with suppress(FileNotFoundError):  # another export removed it meanwhile
            if time.time() - leftover.stat().st_mtime > STALE_STAGING_S:
                shutil.rmtree(leftover, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=root))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _write(path: Path, content: str | dict) -> None:
    """A text, or a dict as JSON, written whole or not at all."""
    if not isinstance(content, str):
        content = json.dumps(content, ensure_ascii=False, indent=1) + "\n"
    write_file_atomic(path, content.encode("utf-8"))
