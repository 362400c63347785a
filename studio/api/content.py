"""generateContent for the local API: the request (contents, systemInstruction,
generationConfig) as what ``training.inference.engine`` takes, and the answer as Google's
``GenerateContentResponse`` (candidates, finishReason, usageMetadata)."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from studio.api.bodies import check_keys, checked_numbers, invalid, number_value, text_value
from training.core.dataset import Message
from training.core.generation import GenerationParams
from training.inference.targets import Target

_GENERATION_CONFIG = {  # Gemini name -> (GenerationParams field, whole number)
    "temperature": ("temperature", False),
    "topP": ("top_p", False),
    "topK": ("top_k", True),
    "maxOutputTokens": ("max_output_tokens", True),
    "seed": ("seed", True),
}
_GENERATION_CONFIG_IGNORED = ("responseMimeType", "presencePenalty", "frequencyPenalty",
                              "responseLogprobs", "thinkingConfig")


def parse_generation_config(obj, defaults: GenerationParams) -> GenerationParams:
    """``generationConfig`` over the model's defaults; ApiError naming the first bad setting."""
    path = "generationConfig"
    if obj is None:
        return defaults
    known = (*_GENERATION_CONFIG, "stopSequences", "candidateCount")
    obj = check_keys(obj, path, known, ignored=_GENERATION_CONFIG_IGNORED)
    count = number_value(obj, "candidateCount", path, whole=True)
    if count not in (None, 1):
        raise invalid(f"{path}.candidateCount is {count}: the studio answers with 1 candidate.")
    params = replace(defaults, **checked_numbers(obj, path, _GENERATION_CONFIG, GenerationParams()))
    stops = obj.get("stopSequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise invalid(f"{path}.stopSequences must be a list of strings.")
        problems = GenerationParams(stop_sequences=tuple(stops)).problems()
        if problems:
            raise invalid(f"{path}.stopSequences: {problems[0]}")
        params = replace(params, stop_sequences=tuple(stops))
    return params


@dataclass(frozen=True)
class Conversation:
    messages: tuple[Message, ...]
    """system (from systemInstruction), then user / assistant turns, ending with a user turn."""

    @property
    def last_text(self) -> str:
        return self.messages[-1].content

    @property
    def turns(self) -> int:
        return sum(m.role != "system" for m in self.messages)


GENERATE_FIELDS = ("contents", "generationConfig", "systemInstruction")
_GENERATE_IGNORED = ("safetySettings", "cachedContent", "toolConfig")


def parse_generate(body) -> tuple[Conversation, object]:
    """A ``generateContent`` body: the conversation, and the raw ``generationConfig``."""
    body = check_keys(body, "", GENERATE_FIELDS, ignored=_GENERATE_IGNORED)
    if body.get("tools"):
        raise invalid("tools: function calling is not supported by the studio's models.")
    contents = body.get("contents")
    if isinstance(contents, dict):  # a single Content is accepted, as the clients send it
        contents = [contents]
    if not isinstance(contents, list) or not contents:
        raise invalid("contents must be a non-empty list of {role, parts: [{text}]} objects.")
    messages = []
    system = body.get("systemInstruction")
    if system is not None:
        text = _content_text(system, "systemInstruction")
        if text.strip():
            messages.append(Message("system", text))
    for index, content in enumerate(contents):
        where = f"contents[{index}]"
        content = check_keys(content, where, ("role", "parts"))
        role = content.get("role") or "user"
        if role not in ("user", "model"):
            raise invalid(f"{where}.role is '{role}': use user or model.")
        messages.append(Message("user" if role == "user" else "assistant",
                                _content_text(content, where)))
    if messages[-1].role != "user":
        raise invalid(f"contents[{len(contents) - 1}] is the model's turn: the conversation must "
                      "end with a user turn for the model to answer.")
    if not messages[-1].content.strip():
        raise invalid(f"contents[{len(contents) - 1}] has no text: give the model something to "
                      "answer.")
    return Conversation(tuple(messages)), body.get("generationConfig")


def _content_text(content, where: str) -> str:
    content = check_keys(content, where, ("role", "parts"))
    parts = content.get("parts")
    if isinstance(parts, dict):
        parts = [parts]
    if not isinstance(parts, list) or not parts:
        raise invalid(f"{where}.parts must be a non-empty list of {{text}} objects.")
    texts = []
    for index, part in enumerate(parts):
        check_keys(part, f"{where}.parts[{index}]", ("text",), ignored=("thought",))
        text = text_value(part, "text", f"{where}.parts[{index}]")
        if text is None:
            raise invalid(f"{where}.parts[{index}] has no text: the studio's models read text "
                          "only.")
        texts.append(text)
    return "".join(texts)


def generate_response(text: str, model_name: str, *, finish_reason: str | None = None,
                      prompt_tokens: int = 0, output_tokens: int = 0) -> dict:
    """One ``GenerateContentResponse`` (a whole answer, or one chunk of a stream: the last
    chunk carries the finish reason and the token counts)."""
    candidate = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
    response = {"candidates": [candidate], "modelVersion": model_name}
    if finish_reason:
        candidate["finishReason"] = finish_reason
        response["usageMetadata"] = {
            "promptTokenCount": prompt_tokens, "candidatesTokenCount": output_tokens,
            "totalTokenCount": prompt_tokens + output_tokens}
    return response


def request_for(target: Target, conversation: Conversation, name: str, *,
                fields_at: str = "contents[0].parts[0].text",
                one_turn: str = "send one user turn in contents and no systemInstruction"):
    """What ``inference`` takes for this model: the conversation for chat and base models; for
    a structured-prompt model one text (a single input field) or its fields as a JSON object.
    ``fields_at`` and ``one_turn`` name the request's parts in its API's words."""
    template = target.template
    if template is None or template.kind == "chat":
        return list(conversation.messages)
    if conversation.turns > 1 or any(m.role == "system" for m in conversation.messages):
        raise invalid(f"{name} was tuned on single prompts, not conversations: {one_turn} (the "
                      "preamble it was tuned with is added for you).")
    keys = template.input_keys
    text = conversation.last_text
    if len(keys) == 1:
        return text
    try:
        fields = json.loads(text)
    except ValueError:
        fields = None
    if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
        example = json.dumps({key: "..." for key in keys})
        raise invalid(f"{fields_at}: {name} takes the input fields "
                      f"{', '.join(keys)}: send them as a JSON object, e.g. {example}.")
    return fields
