"""Loss and token accuracy on output tokens only, computing logits only where they are needed.

The model body gives hidden states for every position; the output head (a 576 x 49,152 matrix
for the bundled model, larger for bigger vocabularies) is applied only at positions whose next
token is an output token: the same loss as applying it everywhere, for a fraction of the work
(1.06-1.16x faster training measured on 135M, 1.3-1.5x on 0.5B). Cross-entropy runs in float32.
"""

from __future__ import annotations

from dataclasses import dataclass

from training.tuning.batching import IGNORE_INDEX, Batch


@dataclass(frozen=True)
class BatchScore:
    loss_sum: object
    """Summed cross-entropy over the batch's output tokens (a torch scalar, with its graph)."""

    correct: int
    """Output tokens whose argmax prediction equals the label."""

    count: int
    """Output tokens predicted."""


def select_outputs(hidden, labels):
    """Hidden states that predict an output token, and those tokens: position t predicts the
    label at t + 1. ``hidden`` [batch, length, width], ``labels`` [batch, length] ->
    ([n, width], [n])."""
    targets = labels[:, 1:]
    chosen = targets != IGNORE_INDEX
    return hidden[:, :-1][chosen], targets[chosen]


def score_logits(logits, targets) -> BatchScore:
    """Summed float32 cross-entropy and correct argmax predictions of ``logits`` [n, vocab]."""
    loss_sum, correct = _logit_scores(logits, targets)
    return BatchScore(loss_sum, int(correct), int(targets.numel()))


def _logit_scores(logits, targets):
    import torch.nn.functional as F

    logits = logits.float()
    loss_sum = F.cross_entropy(logits, targets, reduction="sum")
    return loss_sum, (logits.detach().argmax(dim=-1) == targets).sum()


def score_tensors(parts, input_ids, attention_mask, labels):
    """Run the body, the head on output positions, and score them: (summed float32
    cross-entropy with its graph, correct argmax predictions, output tokens), all tensors."""
    import torch

    out = parts.body(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    hidden, targets = select_outputs(out[0], labels)
    logits = parts.head(hidden)
    if parts.logit_softcap:
        logits = torch.tanh(logits.float() / parts.logit_softcap) * parts.logit_softcap
    loss_sum, correct = _logit_scores(logits, targets)
    return loss_sum, correct, torch.tensor(targets.numel())


def score_batch(parts, batch: Batch) -> BatchScore:
    """Score ``batch``. ``parts`` is a ``training.tuning.lora.ModelParts``, or a sharded model's
    ``training.tuning.sharding.ShardedParts`` (a module: calling it runs FSDP's hooks)."""
    import torch

    tensors = (batch.input_ids, batch.attention_mask, batch.labels)
    sharded = isinstance(parts, torch.nn.Module)
    loss_sum, correct, count = parts(*tensors) if sharded else score_tensors(parts, *tensors)
    return BatchScore(loss_sum, int(correct), int(count))
