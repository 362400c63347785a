"""Fully sharded data parallel (FSDP, PyTorch's ``fully_shard``): for a base model too large for
one GPU, every rank keeps only its share of each layer's weights (base and adapter) and gathers a
layer's full weights just for its forward and backward; the adapter's gradients are reduced to
their shards, and each rank updates its shard. Steps, losses and results mean what they mean on
one process (``training.tuning.parallel``); only the memory differs.

What changes in training (the trainer and ``training.tuning.session`` follow ``Session.sharded``):
- the model is called through ``ShardedParts`` (a module holding the body and the output head), so
  FSDP's hooks gather the weights the body and the head need;
- every rank runs every forward and backward (the gathers are collective): a rank without
  examples in a batch runs one example with zero weight;
- FSDP averages the gradients over the ranks (gloo has no pre-scaled sum), so each rank's loss
  (its share of the batch mean) is multiplied by the number of ranks before the backward pass;
- saving gathers the adapter weights and the optimizer state from every rank (collective), and
  rank 0 writes them in the same files as unsharded runs; resuming puts them back in shards.
"""

from __future__ import annotations

import torch

from training.tuning.lora import ModelParts
from training.tuning.loss import score_tensors
from training.tuning.parallel import Group


class ShardedParts(torch.nn.Module):
    """The body and the head as one module, FSDP's root: ``training.tuning.loss.score_batch``
    calls it, and its forward gathers the root's weights (embeddings, final norm, head)."""

    def __init__(self, parts: ModelParts):
        super().__init__()
        self.body, self.head, self.logit_softcap = parts.body, parts.head, parts.logit_softcap

    def forward(self, input_ids, attention_mask, labels):
        return score_tensors(self, input_ids, attention_mask, labels)


def layers_to_shard(model) -> list:
    """The model's repeated blocks (its decoder layers, by transformers' ``_no_split_modules``),
    each sharded on its own so only one layer's full weights are gathered at a time."""
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = set(getattr(causal, "_no_split_modules", None) or ())
    blocks = [module for module in causal.modules() if type(module).__name__ in names]
    if blocks:
        return blocks
    lists = [module for module in causal.modules() if isinstance(module, torch.nn.ModuleList)]
    return list(max(lists, key=len)) if lists else []


def shard(peft_model, parts: ModelParts, group: Group, device: str):
    """Shard ``peft_model`` over ``group``'s ranks (the model may still be on the CPU: each layer
    moves to ``device`` as it is sharded, so the whole never has to fit). Returns the module to
    score batches with (``training.tuning.loss.score_batch`` takes it as its ``parts``)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cuda" if device.startswith("cuda") else "cpu", (group.world,))
    for block in layers_to_shard(peft_model):
        fully_shard(block, mesh=mesh)
    return fully_shard(ShardedParts(parts), mesh=mesh)


def full_adapter(peft_model) -> dict:
    """The adapter's weights gathered whole, by parameter name, on the CPU (every rank calls it;
    each gets them)."""
    return {name: parameter.full_tensor().detach().cpu()
            for name, parameter in peft_model.named_parameters() if parameter.requires_grad}


def full_optimizer_state(peft_model, optimizer) -> dict:
    """The optimizer state gathered whole (every rank calls it; rank 0 gets it, the others an
    empty dict)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(peft_model, optimizer, options=StateDictOptions(
        full_state_dict=True, cpu_offload=True))


def load_full_state(peft_model, optimizer, weights: dict, optimizer_state: dict) -> None:
    """Put whole adapter weights (by parameter name) and a whole optimizer state, the same on
    every rank, back into this rank's shards."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions, set_model_state_dict, set_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, strict=False)
    set_model_state_dict(peft_model, weights, options=options)
    set_optimizer_state_dict(peft_model, optimizer, optimizer_state, options=options)

