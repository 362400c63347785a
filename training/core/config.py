"""Tuning settings: AI Studio's names and defaults, Vertex's advanced options, one place.

The UI reads its defaults from ``TuningConfig()``; ``problems()`` collects every bad setting at
once, each message naming the setting and what to do.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Literal, Mapping

from training.core.errors import StudioError
from training.core.messages import say

ADAPTER_SIZES = (1, 4, 8, 16)
"""Vertex's adapter sizes (LoRA rank); any positive rank is accepted."""

ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
PRECISIONS = ("auto", "bf16", "fp32")
MAX_TOKENS = 131_072
MAX_SEED = 2**32 - 1

class ConfigError(StudioError):
    """One or more settings are unusable; the message lists each of them."""


SettingKind = Literal["int", "float", "bool", "choice", "choices"]


@dataclass(frozen=True)
class Setting:
    """How one TuningConfig field is entered and checked: forms build their widgets from this
    (``SETTINGS``), and ``TuningConfig.problems`` checks against the same bounds."""

    name: str
    """The TuningConfig field; its name in messages is the catalogue's ``setting.<name>``."""
    kind: SettingKind
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple = ()
    """The values offered (``choice``, ``choices``), or suggested (an ``int`` with choices)."""


    @property
    def said_title(self) -> str:
        """``Batch size``, in the reader's language."""
        return say(f"setting.{self.name}")

    @property
    def allowed(self) -> str:
        """What to enter, for messages: ``a whole number from 1 to 1024``."""
        what = "whole" if self.kind == "int" else "number"
        low, high = _number(self.minimum), _number(self.maximum)
        if low is not None and high is not None:
            return say(f"range.{what}_between", low=low, high=high)
        return say(f"range.{what}_from", low=low) if low is not None else say(f"range.{what}")

    def read(self, value, default):
        """A form value (number boxes give floats, None or text) as this setting's type;
        ConfigError naming the setting when a number box is empty or not a number of the
        right kind."""
        if self.kind == "bool":
            return bool(value)
        if self.kind == "choices":
            return tuple(value or ())
        if self.kind == "choice":
            return value or default
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ConfigError(say("config.empty", title=self.said_title, allowed=self.allowed))
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(say("config.not_a_number", title=self.said_title, value=value,
                                  allowed=self.allowed)) from None
        if self.kind == "float":
            return number
        if not number.is_integer():
            raise ConfigError(say("config.not_whole", title=self.said_title, value=number,
                                  allowed=self.allowed))
        return int(number)


MAX_PROCESSES = 64
"""Training processes per machine at most (one per GPU of the largest machines)."""

SETTINGS: dict[str, Setting] = {
    "epochs": Setting("epochs", "int", 1, 1000),
    "batch_size": Setting("batch_size", "int", 1, 1024),
    "learning_rate": Setting("learning_rate", "float", 0, 1, step=0.0001),
    "learning_rate_multiplier": Setting("learning_rate_multiplier", "float", 0, 100, step=0.1),
    "lora_rank": Setting("lora_rank", "int", 1, 1024, choices=ADAPTER_SIZES),
    "lora_alpha": Setting("lora_alpha", "float", 0),
    "lora_dropout": Setting("lora_dropout", "float", 0, 0.99, step=0.05),
    "target_modules": Setting("target_modules", "choices", choices=ALL_PROJECTIONS),
    "max_input_tokens": Setting("max_input_tokens", "int", 1, MAX_TOKENS),
    "max_output_tokens": Setting("max_output_tokens", "int", 1, MAX_TOKENS),
    "eval_rows": Setting("eval_rows", "int", 0, 250),
    "eval_interval_steps": Setting("eval_interval_steps", "int", 1),
    "early_stopping": Setting("early_stopping", "bool"),
    "early_stopping_patience": Setting("early_stopping_patience", "int", 1),
    "select_best_checkpoint": Setting("select_best_checkpoint", "bool"),
    "seed": Setting("seed", "int", 0, MAX_SEED),
    "precision": Setting("precision", "choice", choices=PRECISIONS),
    "processes": Setting("processes", "int", 0, MAX_PROCESSES),
    "shard_model": Setting("shard_model", "bool"),
}
"""Every TuningConfig field, in the order forms show them."""


@dataclass(frozen=True)
class TuningConfig:
    # -- AI Studio / Gemini hyperparameters --
    epochs: int = 5
    """Passes over the training examples (Gemini default 5: stop where the loss curve flattens)."""

    batch_size: int = 4
    """Examples per optimizer step (Gemini default 4)."""

    learning_rate: float = 0.001
    """Peak learning rate of the LoRA adapter (Gemini default 0.001)."""

    learning_rate_multiplier: float = 1.0
    """Scales ``learning_rate`` (Gemini's alternative knob); the rate used is their product."""

    # -- advanced (Vertex) --
    lora_rank: int = 8
    """Adapter size: LoRA rank r (Vertex offers 1, 4, 8, 16)."""

    lora_alpha: float = 16.0
    """LoRA scaling numerator; the adapter's output is scaled by alpha / rank."""

    lora_dropout: float = 0.0
    """Dropout on the adapter's input during training (0 keeps small runs deterministic and fast)."""

    target_modules: tuple[str, ...] = ALL_PROJECTIONS
    """Linear layers that get an adapter (names inside each decoder layer)."""

    max_input_tokens: int = 8_192
    """Prompt tokens kept per example; longer prompts are cut from the left (Vertex limit)."""

    max_output_tokens: int = 1_024
    """Answer tokens kept per example; longer answers are cut at the end (Vertex limit)."""

    eval_rows: int = 0
    """Examples split off the dataset for evaluation (0: none; Vertex: 10-250)."""

    eval_interval_steps: int = 20
    """Evaluate every this many steps, and at the end of each epoch (Vertex default 20)."""

    early_stopping: bool = False
    """Stop when eval token accuracy has not improved for ``early_stopping_patience`` evals."""

    early_stopping_patience: int = 3
    """Evaluations without improvement before early stopping."""

    select_best_checkpoint: bool = False
    """Keep the adapter with the best eval loss instead of the last one (needs an eval set)."""

    seed: int = 0
    """Seeds shuffling, adapter initialisation and dropout: the same seed gives the same curve."""

    precision: Literal["auto", "bf16", "fp32"] = "auto"
    """auto: bf16 where the hardware runs it fast (CUDA with bf16, CPUs with AVX-512 BF16/AMX),
    else fp32. Never fp16 on CPU (0.4 GFLOP/s measured)."""

    processes: int = 0
    """Training processes per machine (data parallel, ``training.tuning.parallel``): 0 for one
    per visible GPU (one on the CPU). Steps, loss and results mean the same for any number."""

    shard_model: bool = False
    """With several processes, split the base model's weights (and the adapter's) between them
    (FSDP, ``training.tuning.sharding``) instead of a whole copy each: for base models that do
    not fit one GPU. Same steps and results; more communication per step."""

    @property
    def effective_learning_rate(self) -> float:
        return self.learning_rate * self.learning_rate_multiplier

    def problems(self) -> list[str]:
        """Every unusable setting, one message each (empty when all is well)."""
        found = []

        def need(condition: bool, name: str, **params) -> None:
            if not condition:
                found.append(say(f"config.{name}", value=getattr(self, name), **params))

        s = SETTINGS
        need(_within(self.epochs, s["epochs"]), "epochs", high=_number(s["epochs"].maximum))
        need(_within(self.batch_size, s["batch_size"]), "batch_size",
             high=_number(s["batch_size"].maximum))
        need(0 < self.learning_rate <= s["learning_rate"].maximum, "learning_rate",
             high=_number(s["learning_rate"].maximum))
        need(0 < self.learning_rate_multiplier <= s["learning_rate_multiplier"].maximum,
             "learning_rate_multiplier", high=_number(s["learning_rate_multiplier"].maximum))
        need(_within(self.lora_rank, s["lora_rank"]), "lora_rank",
             high=_number(s["lora_rank"].maximum))
        need(self.lora_alpha > 0, "lora_alpha")
        need(0 <= self.lora_dropout < 1, "lora_dropout")
        need(bool(self.target_modules), "target_modules")
        need(1 <= self.max_input_tokens <= MAX_TOKENS, "max_input_tokens", high=MAX_TOKENS)
        need(1 <= self.max_output_tokens <= MAX_TOKENS, "max_output_tokens", high=MAX_TOKENS)
        need(self.eval_rows == 0 or 10 <= self.eval_rows <= 250, "eval_rows")
        need(self.eval_interval_steps >= 1, "eval_interval_steps")
        need(self.early_stopping_patience >= 1, "early_stopping_patience")
        need(self.precision in PRECISIONS, "precision")
        need(0 <= self.seed <= MAX_SEED, "seed", high=MAX_SEED)
        need(_within(self.processes, s["processes"]), "processes", high=MAX_PROCESSES)
        return found

    def check(self, has_eval_set: bool | None = None) -> None:
        """Raise ConfigError listing every problem; ``has_eval_set`` adds the checks that need to
        know whether an evaluation set exists (early stopping, best-checkpoint selection)."""
        found = self.problems()
        if has_eval_set is False and (self.early_stopping or self.select_best_checkpoint):
            found.append(say("config.needs_eval_set"))
        if found:
            raise ConfigError(" ".join(found) if len(found) == 1 else
                              say("config.several") + "\n- " + "\n- ".join(found))

    def to_dict(self) -> dict:
        data = asdict(self)
        data["target_modules"] = list(self.target_modules)
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> "TuningConfig":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "target_modules" in values:
            modules = values["target_modules"]
            if isinstance(modules, str):
                modules = [m.strip() for m in modules.split(",") if m.strip()]
            values["target_modules"] = tuple(modules)
        return cls(**values)


def _within(value, setting: Setting) -> bool:
    return setting.minimum <= value <= setting.maximum


def _number(value: float | None) -> str | None:
    """``1024``, ``0.99``: whole numbers without a decimal point or an exponent."""
    if value is None:
        return None
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
