"""The decode loop: token ids in, new token ids out, chunk by chunk, with a KV cache.

Why not ``model.generate``: on a CPU, decoding a small model reads every weight once per step
and is bound by memory bandwidth (SmolLM2-135M in float32: 538 MB per token, about 10 GB/s per
core measured), and a forward pass over a few tokens costs little more than over one (2 tokens:
+10 %, 4: +50 %, 8: +90 %, measured on the 2-vCPU machines). So greedy decoding here drafts a
few tokens by *prompt lookup* (the tokens that followed the latest earlier occurrence of the
last n-gram, in the prompt or the answer so far) and checks them all in one forward pass,
keeping the drafted tokens that the model itself would have chosen, plus the model's own next
token. The answer is the model's greedy answer (only the rounding of a many-token matrix
multiply differs from a one-token one); it just arrives several tokens per step where the
answer repeats or copies its input (labels, names, code, lists). The draft length adapts: +2
after a fully accepted draft, back to what was accepted otherwise.

Threads: each step runs a few hundred short parallel regions (one per matrix multiply). With
``OMP_WAIT_POLICY=PASSIVE`` (``training.tuning.runtime``: chosen so training does not stall on a busy
machine) idle OpenMP threads sleep between regions and waking them costs about as much as the
work: SmolLM2-135M decoded at 13-17 tokens/s with 2 passive threads against 20-30 with briefly
spinning ones (``GOMP_SPINCOUNT=100000``), for plain ``generate`` and this loop alike.

So a step over a few tokens (every step after the prompt's) runs on one thread, set for the
calling thread only (OpenMP's thread count is per thread: the training thread and the rest of
the process keep theirs), which avoids waking the sleeping one: 19.2 against 15.8 tokens/s with
two passive threads, and the other core stays free for a job training at the same time. The
prompt, a bigger matrix multiply, keeps every thread (320 tokens: 379 ms on two, 495 on one).

A tuned model answers one task, so its answers look like its training answers
(``category: billing; urgency: low``): drafts also come from a ``DraftIndex`` of the training
outputs, which proposes what most often followed the last n-gram there, while the answer is no
longer than the longest training answer. The prompt rarely holds the answer's fixed words; the
training outputs always do.

Sampling (temperature > 0) takes one token per step, with transformers' own temperature, top-k
and top-p warpers, from a generator seeded by ``seed`` (the global random state is untouched).
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Iterator, Sequence

from training.core.generation import GenerationParams

MAX_NGRAM = 3
"""Longest n-gram looked up (the longest match is tried first)."""

MIN_NGRAM = 1
FIRST_DRAFT_TOKENS = 4
MAX_DRAFT_TOKENS = 10
LOOKUP_WINDOW_TOKENS = 4_096
"""Only this many latest tokens are searched for a match (bounds the cost on long prompts)."""

STEP_THREADS = 1
"""Threads for a forward pass over at most ``FEW_TOKENS`` tokens (see above)."""
FEW_TOKENS = 16


def decode(model, prompt_ids: Sequence[int], params: GenerationParams, eos_ids: Sequence[int], *,
           ignore_eos: bool = False, lookup: bool = True,
           answers: "DraftIndex | None" = None) -> Iterator[list[int]]:
    """Yield the new token ids in chunks until an end-of-sequence token (not included) or
    ``params.max_output_tokens``. ``ignore_eos`` forbids end tokens instead (like
    ``min_new_tokens``: for timing). ``lookup``: draft greedy tokens by prompt lookup, and from
    ``answers`` (the training outputs) when given. Close the generator to stop early."""
    import torch
    from transformers import DynamicCache

    if not prompt_ids:
        raise ValueError("the prompt has no tokens")
    device = next(model.parameters()).device
    banned = torch.tensor(sorted(set(eos_ids)), dtype=torch.long, device=device) if ignore_eos else None
    choose = _greedy if params.greedy else _sampler(params)
    ends = set() if ignore_eos else set(eos_ids)
    sequence = list(prompt_ids)
    remaining = params.max_output_tokens
    draft_size = FIRST_DRAFT_TOKENS
    cache = DynamicCache(config=model.config)
    feed = list(sequence)  # tokens not yet in the cache: the prompt, then the last token
    drafted: list[int] = []
    while remaining > 0:
        # Inference mode is entered per step, never held across a ``yield``: the caller's code
        # runs between steps, and may resume this generator from another thread.
        with torch.inference_mode():
            chosen = _step(model, cache, len(sequence) - len(feed), feed, drafted, banned, choose)
            accepted = _accepted(drafted, chosen)
            if accepted < len(drafted):
                cache.crop(-(len(drafted) - accepted))  # drop the rejected draft's keys and values
        new = (drafted[:accepted] + [chosen[accepted]])[:remaining]
        ended = next((i for i, token in enumerate(new) if token in ends), None)
        if ended is not None:
            new = new[:ended]
        if new:
            yield new
        if ended is not None:
            return
        sequence.extend(new)
        remaining -= len(new)
        feed = [new[-1]]
        if lookup and params.greedy:
            draft_size = _next_draft_size(draft_size, accepted, len(drafted))
            written = len(sequence) - len(prompt_ids)
            within = answers if answers is not None and answers.covers(written) else None
            drafted = propose(sequence, min(draft_size, remaining - 1), within)


def _step(model, cache, position: int, feed: list[int], drafted: list[int], banned, choose) -> list[int]:
    """One forward pass over ``feed + drafted`` (the cache holds ``position`` tokens before
    them): the token chosen after the last fed token and after each drafted one."""
    import torch

    device = next(model.parameters()).device
    tokens = feed + drafted
    with _threads(STEP_THREADS if len(tokens) <= FEW_TOKENS and device.type == "cpu" else None):
        logits = model(input_ids=torch.tensor([tokens], dtype=torch.long, device=device),
                       past_key_values=cache, use_cache=True,
                       cache_position=torch.arange(position, position + len(tokens), device=device),
                       logits_to_keep=len(drafted) + 1).logits[0].float()
    if banned is not None:
        logits[:, banned] = -float("inf")
    return choose(logits)


@contextmanager
def _threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` threads in this thread (None: unchanged), then restore."""
    import torch

    before = torch.get_num_threads()
    if count is None or count == before:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _greedy(logits) -> list[int]:
    return logits.argmax(dim=-1).tolist()


def _sampler(params: GenerationParams):
    import torch
    from transformers import (
        LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper,
    )

    warpers = LogitsProcessorList([TemperatureLogitsWarper(params.temperature)])
    if params.top_k:
        warpers.append(TopKLogitsWarper(params.top_k))
    if params.top_p < 1:
        warpers.append(TopPLogitsWarper(params.top_p))
    generator = torch.Generator()
    generator.manual_seed(params.seed if params.seed is not None else random.randrange(2**32))

    def sample(logits) -> list[int]:
        scores = warpers(None, logits[-1:].cpu())
        probabilities = torch.softmax(scores, dim=-1)
        return [int(torch.multinomial(probabilities[0], 1, generator=generator))]

    return sample


def _accepted(drafted: list[int], chosen: list[int]) -> int:
    """How many drafted tokens the model itself chose, from the first."""
    count = 0
    while count < len(drafted) and drafted[count] == chosen[count]:
        count += 1
    return count


def _next_draft_size(size: int, accepted: int, drafted: int) -> int:
    if drafted == 0:
        return size
    if accepted == drafted:
        return min(MAX_DRAFT_TOKENS, size + 2)
    return max(1, accepted)


def propose(sequence: Sequence[int], count: int, answers: "DraftIndex | None" = None) -> list[int]:
    """Up to ``count`` tokens that followed the sequence's last n tokens (n from MAX_NGRAM down to
    MIN_NGRAM): in ``answers`` first, else at the latest earlier occurrence in the sequence
    itself; empty when nothing matches. A match close to the end continues as the repetition it
    is (``a b c a b`` drafts ``c a b c ...``)."""
    if count <= 0:
        return []
    window = list(sequence[-LOOKUP_WINDOW_TOKENS:])
    length = len(window)
    for size in range(min(MAX_NGRAM, length - 1), MIN_NGRAM - 1, -1):
        tail = window[-size:]
        if answers is not None:
            draft = answers.after(tail, count)
            if draft:
                return draft
        for start in range(length - size - 1, -1, -1):
            if window[start:start + size] == tail:
                draft = []
                for offset in range(start + size, start + size + count):
                    draft.append(window[offset] if offset < length else draft[offset - length])
                return draft
    return []


class DraftIndex:
    """What most often followed each n-gram (n up to MAX_NGRAM) in a model's training outputs:
    built once per tuned model, looked up in constant time at every decoding step."""

    def __init__(self, answers: Sequence[Sequence[int]], end_ids: Sequence[int] = ()):
        """``answers``: each training output's tokens as the model wrote them (after the prompt),
        ending with its end-of-text token; ``end_ids`` stop a draft after them."""
        self._tokens: list[int] = []
        self._ends = set(end_ids)
        counts: dict[tuple[int, ...], dict[int, list[int]]] = {}
        for answer in answers:
            begin = len(self._tokens)
            self._tokens.extend(answer)
            for position in range(begin, len(self._tokens) - 1):
                following = self._tokens[position + 1]
                for size in range(MIN_NGRAM, MAX_NGRAM + 1):
                    if position - size + 1 < begin:
                        break
                    key = tuple(self._tokens[position - size + 1:position + 1])
                    seen = counts.setdefault(key, {}).setdefault(following, [0, 0])
                    seen[0] += 1
                    seen[1] = position + 1  # the latest place it continued so
        self._next = {key: max(found.values())[1] for key, found in counts.items()}
        self.longest = max((len(answer) for answer in answers), default=0)
        """Tokens in the longest answer: past that, an answer no longer looks like the training
        answers (it repeats itself, say) and drafts come from the sequence alone."""

    def covers(self, generated: int) -> bool:
        """Whether an answer ``generated`` tokens long is still within the training answers'."""
        return generated < self.longest

    def __len__(self) -> int:
        return len(self._tokens)

    def after(self, tail: Sequence[int], count: int) -> list[int]:
        """Up to ``count`` tokens that most often followed ``tail``, ending at an end token."""
        start = self._next.get(tuple(tail))
        if start is None:
            return []
        draft = []
        for token in self._tokens[start:start + count]:
            draft.append(token)
            if token in self._ends:
                break
        return draft
