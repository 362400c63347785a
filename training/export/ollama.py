"""The Ollama ``Modelfile`` beside an exported GGUF file: ``FROM`` the file, a ``TEMPLATE`` (Go
``text/template``, as Ollama renders it) that writes the prompt the model was tuned on, and
``PARAMETER`` lines for its end tokens, stop sequences and sampling defaults.

- A structured-prompt model: the preamble, the input label and ``{{ .Prompt }}``, then the output
  label, exactly as ``training.core.template.render_prompt``. With several input fields, the user
  types them as the prompt shows them (one ``Label value`` line each).
- A chat model on a ChatML base model (the bundled one): ChatML turns over ``.Messages``, with
  the base model's default system message as ``SYSTEM``. On a base model without a chat template:
  the studio's plain ``role: text`` turns. Any other chat template: no ``TEMPLATE`` line, and
  Ollama takes the chat template stored in the GGUF file.
"""

from __future__ import annotations

import json
import re

from training.core.dataset import PromptTemplate
from training.core.generation import GenerationParams
from training.export.model_card import ModelFacts
from training.models import load_tokenizer

MODELFILE = "Modelfile"

CHATML = ("{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
          "<|im_start|>assistant\n")
PLAIN_TURNS = "{{- range .Messages }}{{ .Role }}: {{ .Content }}\n{{ end }}assistant:"
_PROBE = "\x00probe\x00"


def modelfile(facts: ModelFacts, gguf_name: str) -> str:
    """The Modelfile text for the tuned model of ``facts`` stored as ``gguf_name``."""
    target, job = facts.target, facts.job
    tokenizer = load_tokenizer(target.base)
    template, system = _template(target.template, tokenizer)
    lines = [f"# {job.display_name} ({job.id}), tuned with Tuning Studio from {target.base.name}.",
             f"#   ollama create {job.id} -f {MODELFILE}", f"#   ollama run {job.id}",
             f"FROM ./{gguf_name}"]
    if template is not None:
        lines.append(f"TEMPLATE {_quoted(template)}")
    else:
        lines.append("# The chat template is the one stored in the GGUF file.")
    if system:
        lines.append(f"SYSTEM {_quoted(system)}")
    lines += parameters(target.defaults, _end_tokens(tokenizer))
    return "\n".join(lines) + "\n"


def go_template(template: PromptTemplate) -> str:
    """The structured prompt as a Go template over ``.Prompt``."""
    parts = []
    if template.preamble.strip():
        parts.append(_go_text(template.preamble.strip() + "\n\n"))
    for position, item in enumerate(template.inputs):
        label = _go_text(f"{item.label} " if item.label else "")
        value = "{{ .Prompt }}" if position == 0 else ""
        parts.append(f"{label}{value}\n")
    parts.append(_go_text(template.output_label))
    return "".join(parts)


def parameters(params: GenerationParams, end_tokens: list[str]) -> list[str]:
    """``PARAMETER`` lines: each end token and stop sequence as ``stop``, then the sampling
    defaults (temperature 0 is greedy) and the answer length."""
    stops = list(dict.fromkeys([*end_tokens, *params.stop_sequences]))
    lines = [f"PARAMETER stop {json.dumps(stop, ensure_ascii=False)}" for stop in stops]
    lines += [f"PARAMETER temperature {params.temperature:g}",
              f"PARAMETER top_p {params.top_p:g}",
              f"PARAMETER top_k {params.top_k}",
              f"PARAMETER num_predict {params.max_output_tokens}"]
    if params.seed is not None:
        lines.append(f"PARAMETER seed {params.seed}")
    return lines


def _template(template: PromptTemplate, tokenizer) -> tuple[str | None, str]:
    """(TEMPLATE, SYSTEM) for the tuned model's prompt."""
    if template.kind != "chat":
        return go_template(template), ""
    if not getattr(tokenizer, "chat_template", None):
        return PLAIN_TURNS, ""
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": _PROBE}],
                                             tokenize=False, add_generation_prompt=True)
    turn = f"<|im_start|>user\n{_PROBE}<|im_end|>\n<|im_start|>assistant\n"
    if not rendered.endswith(turn):
        return None, ""
    head = rendered[: -len(turn)]
    match = re.fullmatch(r"<\|im_start\|>system\n(.*)<\|im_end\|>\n", head, flags=re.S)
    if head and not match:
        return None, ""
    return CHATML, match.group(1) if match else ""


def _end_tokens(tokenizer) -> list[str]:
    """The tokens that end an answer in the studio: the EOS token and ChatML's end of turn."""
    found = [tokenizer.eos_token] if tokenizer.eos_token else []
    vocabulary = tokenizer.get_vocab()
    found += [token for token in ("<|im_end|>", "<|endoftext|>") if token in vocabulary]
    return list(dict.fromkeys(found))


def _go_text(text: str) -> str:
    """``text`` as literal template text: ``{{`` (the only sequence Go's text/template reads in
    literal text) is written as an action printing it."""
    return text.replace("{{", '{{ "{{" }}')


def _quoted(text: str) -> str:
    """A Modelfile string: triple-quoted, a ``\"\"\"`` inside written as an action printing it."""
    return '"""' + text.replace('"""', '{{ "\\"\\"\\"" }}') + '"""'
