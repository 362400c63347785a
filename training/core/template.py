"""The one function that turns an example into the text a model sees.

The editor's preview, the trainer and the playground all call ``render_example`` /
``render_prompt``, so a tuned model is always prompted exactly as it was trained.

A rendering is a list of segments; ``trained`` segments are the tokens the loss is computed on
(the output), the others are context (preamble, inputs, earlier turns).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from training.core.dataset import Example, Message, PromptTemplate, chat_messages


@dataclass(frozen=True)
class Segment:
    text: str
    trained: bool


def render_example(template: PromptTemplate, example: Example, tokenizer=None) -> list[Segment]:
    """Segments of one training example. With a tokenizer, the answer ends with its EOS token
    (structured) or the model's own chat template is used (chat)."""
    if template.kind == "chat":
        return _render_chat(chat_messages(example), tokenizer)
    prompt = render_prompt(template, example.fields, tokenizer)
    target = (" " if template.output_label else "") + example.output
    eos = getattr(tokenizer, "eos_token", None) if tokenizer is not None else None
    return [Segment(prompt, False), Segment(target + (eos or ""), True)]


def render_prompt(template: PromptTemplate, fields, tokenizer=None) -> str:
    """The prompt for given input values, ending where the model starts to write."""
    if template.kind == "chat":
        messages = chat_messages(Example(fields, ""))[:-1]
        return _chat_prefix(messages, tokenizer)
    parts = []
    if template.preamble.strip():
        parts.append(template.preamble.strip() + "\n\n")
    for item in template.inputs:
        value = str(fields.get(item.key, "") or "")
        parts.append(f"{item.label} {value}\n" if item.label else f"{value}\n")
    parts.append(template.output_label)
    return "".join(parts)


def prompt_text(segments: Sequence[Segment]) -> str:
    """Everything before the last trained segment: what the model is given at inference."""
    last = max((i for i, s in enumerate(segments) if s.trained), default=len(segments))
    return "".join(s.text for s in segments[:last])


def _has_chat_template(tokenizer) -> bool:
    return tokenizer is not None and bool(getattr(tokenizer, "chat_template", None))


def _as_dicts(messages: Sequence[Message]) -> list[dict]:
    return [{"role": m.role, "content": m.content} for m in messages]


def _chat_prefix(messages: Sequence[Message], tokenizer) -> str:
    if _has_chat_template(tokenizer):
        if not messages:  # chat templates refuse an empty conversation
            return ""
        return tokenizer.apply_chat_template(
            _as_dicts(messages), tokenize=False, add_generation_prompt=True
        )
    return "".join(_plain_turn(m) for m in messages) + "assistant:"


def _plain_turn(message: Message) -> str:
    return f"{message.role}: {message.content}\n"


def _render_chat(messages: list[Message], tokenizer) -> list[Segment]:
    """Every assistant turn is trained; everything else is context. Falls back to training only
    the last turn when the chat template does not render conversations prefix by prefix."""
    if not _has_chat_template(tokenizer):
        eos = getattr(tokenizer, "eos_token", None) or ""
        segments, context = [], ""
        for message in messages:
            if message.role == "assistant":
                segments.append(Segment(context + "assistant:", False))
                segments.append(Segment(f" {message.content}\n" if message is not messages[-1]
                                        else f" {message.content}{eos}", True))
                context = ""
            else:
                context += _plain_turn(message)
        return segments

    def full(upto: int) -> str:
        return tokenizer.apply_chat_template(_as_dicts(messages[:upto]), tokenize=False)

    segments, done = [], ""
    for index, message in enumerate(messages):
        if message.role != "assistant" or 0 == index < len(messages) - 1:
            continue  # an opening assistant turn (a greeting) answers nothing: it is context
        prefix = _chat_prefix(messages[:index], tokenizer)
        whole = full(index + 1)
        if not (prefix.startswith(done) and whole.startswith(prefix)):
            prefix = _chat_prefix(messages[:-1], tokenizer)
            return [Segment(prefix, False), Segment(full(len(messages))[len(prefix):], True)]
        segments.append(Segment(prefix[len(done):], False))
        segments.append(Segment(whole[len(prefix):], True))
        done = whole
    return segments


def token_counts(segment_lists: Sequence[Sequence[Segment]], tokenizer) -> list[tuple[int, int]]:
    """(input tokens, output tokens) per rendering, tokenized in two batches for speed. Segments
    are tokenized one by one and concatenated, as the trainer does."""
    context_texts, trained_texts, owners = [], [], []
    for owner, segments in enumerate(segment_lists):
        for segment in segments:
            (trained_texts if segment.trained else context_texts).append(segment.text)
            owners.append((owner, segment.trained))
    lengths = {
        False: iter(_lengths(context_texts, tokenizer)),
        True: iter(_lengths(trained_texts, tokenizer)),
    }
    counts = [[0, 0] for _ in segment_lists]
    for owner, trained in owners:
        counts[owner][1 if trained else 0] += next(lengths[trained])
    return [(a, b) for a, b in counts]


def _lengths(texts: list[str], tokenizer) -> list[int]:
    if not texts:
        return []
    encoded = tokenizer(texts, add_special_tokens=False, return_attention_mask=False)
    return [len(ids) for ids in encoded["input_ids"]]
