"""Download a tuned model: its LoRA adapter (the PEFT folder) or the adapter merged into its base
model's weights (a folder ``AutoModelForCausalLM.from_pretrained`` loads), zipped into
``<data_dir>/exports/`` (``training.export.archive.zip_folder``) with its prompt template and a model card
(``training.export.model_card``).

A structured prompt is raw text in training (``training.core.template.render_prompt``), not the base
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
import shutil
import tempfile
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Callable, Iterator

from training.core.atomic import write_file_atomic
from training.core.dataset import PromptTemplate
from training.core.errors import ModelError
from training.core.generation import GenerationParams
from training.core.layout import GENERATION_FILE, TEMPLATE_FILE, exports_dir, has_adapter
from training.export.archive import zip_folder
from training.export.model_card import (
    CHAT_TEMPLATE_FILE, ExportKind, ModelFacts, generation_settings, model_card,
)
from training.inference.engine import eos_token_ids
from training.inference.model_cache import LoadedModel, apply_adapter
from training.inference.targets import Target, resolve_target
from training.models import load_model, load_tokenizer

MERGED_TEMPLATE_FILE = "prompt_template.json"
CARD_FILE = "README.md"
STALE_STAGING_S = 6 * 3600  # a staging folder this old is a crashed export's (a merge takes minutes)
_STAGING_PREFIX = ".partial-export-"


def export_adapter(store, data_dir: Path, job_id: str, checkpoint: str | None = None) -> Path:
    """``<data_dir>/exports/<id>[-epoch-N]-adapter.zip`` (see ``save_adapter``)."""
    return _export(store, data_dir, job_id, "adapter", save_adapter, checkpoint)


def export_merged(store, data_dir: Path, job_id: str, checkpoint: str | None = None) -> Path:
    """``<data_dir>/exports/<id>[-epoch-N]-merged.zip`` (see ``save_merged``); seconds to
    minutes."""
    return _export(store, data_dir, job_id, "merged", save_merged, checkpoint)


def _export(store, data_dir: Path, job_id: str, kind: ExportKind,
            save: Callable[[ModelFacts, Path], None], checkpoint: str | None = None) -> Path:
    facts = gather_facts(store, data_dir, job_id, checkpoint)
    name = f"{export_name(facts)}-{kind}"
    with staging(data_dir) as folder:
        save(facts, folder)
        return zip_folder(folder, exports_dir(data_dir) / f"{name}.zip", name)


def export_name(facts: ModelFacts) -> str:
    """The tuned model's id, with the checkpoint when one was chosen (``reverser-epoch-1``)."""
    return facts.job.id + (f"-{facts.target.checkpoint}" if facts.target.checkpoint else "")


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


def gather_facts(store, data_dir: Path, job_id: str, checkpoint: str | None = None) -> ModelFacts:
    """Raises NotFoundError for an unknown id, and ModelError saying what to do when the job has
    no adapter yet (or no such ``checkpoint``: ``epoch-N``)."""
    data_dir, job = Path(data_dir), store.get_job(job_id)
    adapter = job.path(data_dir, job.result_dir)
    if not checkpoint and not has_adapter(adapter):
        raise ModelError.of("export.no_adapter" if job.is_final else "export.not_ready",
                            id=job.id, gemini_state=job.gemini_state, state=job.state)
    target = resolve_target(store, data_dir, job.id, checkpoint)
    dataset, eval_dataset = store.dataset_version_info(job.dataset_version_id), None
    if job.eval_dataset_version_id is not None:
        eval_dataset = store.dataset_version_info(job.eval_dataset_version_id)
        train, held = dataset.example_count, eval_dataset.example_count
    else:  # training.tuning.batching.split_eval holds eval_rows back from the dataset
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


def _generation_config(model, tokenizer, params: GenerationParams):
    """The base model's generation config with the tuned defaults and the studio's end tokens."""
    eos = eos_token_ids(LoadedModel(model, tokenizer, 0, "", "float32", "cpu"))
    config = copy.deepcopy(model.generation_config)
    config.update(**generation_settings(params), eos_token_id=eos[0] if len(eos) == 1 else eos)
    if config.pad_token_id is None:
        config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    config._from_model_config = False  # generate() must not rebuild it from config.json
    return config


# --- files ------------------------------------------------------------------------------------


def _merged_model(target: Target):
    """The base model in float32 with the adapter merged into its weights."""
    model = load_model(target.base, dtype="float32")
    return apply_adapter(model, target.adapter_dir, True, target.base, target.label).eval()


def _save_tokenizer(tokenizer, folder: Path, chat_template: str) -> None:
    """The base tokenizer saved with ``chat_template`` (the shared tokenizer is not changed)."""
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(folder)
    saved = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    saved.chat_template = chat_template
    saved.save_pretrained(folder)


@contextmanager
def staging(data_dir: Path) -> Iterator[Path]:
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
