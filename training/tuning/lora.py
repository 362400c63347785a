"""The one place that talks to peft: attach a LoRA adapter, save it, read its weights back.

peft is used through its public functions only (``LoraConfig``, ``get_peft_model``,
``save_pretrained``) and its saved file format; nothing here subclasses its internals.
Adapter weights stay float32 even on a bfloat16 base model (``autocast_adapter_dtype``), so the
optimizer updates full-precision numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from training.core.config import ConfigError, TuningConfig
from training.core.layout import ADAPTER_WEIGHTS
from training.models import building


@dataclass(frozen=True)
class ModelParts:
    """What the trainer calls directly: the transformer body (hidden states) and the output head
    (applied only at output positions)."""

    body: object
    head: object
    logit_softcap: float | None
    """Gemma-style final logit soft-capping, applied after the head when the model has it."""


def attach_lora(model, config: TuningConfig):
    """Freeze ``model`` and add trainable LoRA adapters to ``config.target_modules``. Seed torch
    before calling: the adapters' initial values come from torch's generator."""
    from peft import LoraConfig, TaskType, get_peft_model

    check_target_modules(model, config.target_modules)
    lora_config = LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
    )
    with building():  # see training.models.building
        return get_peft_model(model, lora_config, autocast_adapter_dtype=True)


def check_target_modules(model, target_modules) -> None:
    """Raise ConfigError naming the target modules that are not linear layers of ``model``."""
    available = linear_layer_names(model)
    missing = [name for name in target_modules if name not in available]
    if missing:
        raise ConfigError.of(f"training.target_modules_{'one' if len(missing) == 1 else 'many'}",
                             missing=", ".join(missing), available=", ".join(sorted(available)))


def linear_layer_names(model) -> set[str]:
    """Names (the last part of the path) of the model's linear layers, the output head excluded."""
    import torch

    head = model.get_output_embeddings()
    return {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module is not head
    }


def model_parts(peft_model) -> ModelParts:
    causal = peft_model.get_base_model()
    body = getattr(causal, causal.base_model_prefix)
    softcap = getattr(causal.config, "final_logit_softcapping", None)
    return ModelParts(body=body, head=causal.get_output_embeddings(), logit_softcap=softcap)


def trainable_parameters(peft_model) -> list:
    return [p for p in peft_model.parameters() if p.requires_grad]


def save_adapter(peft_model, folder: Path, weights: dict | None = None) -> None:
    """The adapter as safetensors + adapter_config.json (loadable with PeftModel.from_pretrained).
    ``weights``: the adapter's weights by parameter name, when the model holds only a share of
    them (``training.tuning.sharding``)."""
    peft_model.save_pretrained(str(folder), safe_serialization=True, state_dict=weights)


def read_adapter_weights(peft_model, folder: Path) -> dict:
    """The weights saved by ``save_adapter``, on the CPU, by ``peft_model``'s trainable parameter
    names in their order (peft saves them without the adapter's name)."""
    from safetensors.torch import load_file

    saved = load_file(str(Path(folder) / ADAPTER_WEIGHTS))
    names = {name: name.replace(".default.", ".")
             for name, parameter in peft_model.named_parameters() if parameter.requires_grad}
    missing = [stored for stored in names.values() if stored not in saved]
    if missing or len(saved) != len(names):
        raise ValueError(f"adapter weights do not match the adapter: {', '.join(missing[:3])}")
    return {name: saved[stored] for name, stored in names.items()}
