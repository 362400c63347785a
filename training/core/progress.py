"""What a training run reports, and the small interface it reports through.

The trainer knows nothing of the UI or the database: it calls a ``ProgressSink``. The job runner's
sink writes rows to SQLite; the UI polls them. Metric names follow Vertex
(``train_total_loss``, ``train_fraction_of_correct_next_step_preds``, ``train_num_predictions``)
and Gemini's snapshots (step, epoch, mean loss, compute time).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol


@dataclass(frozen=True)
class StepMetrics:
    step: int
    """1-based optimizer step, counted over the whole run (not reset by epochs or a resume)."""

    epoch: float
    """Fractional epoch at the end of this step, e.g. 1.25."""

    loss: float
    """Mean cross-entropy over this step's output tokens (Vertex ``train_total_loss``)."""

    token_accuracy: float
    """Share of output tokens whose argmax prediction was right
    (``train_fraction_of_correct_next_step_preds``)."""

    num_predictions: int
    """Output tokens predicted in this step (``train_num_predictions``)."""

    learning_rate: float
    """Learning rate used for this step."""

    tokens: int = 0
    """Real (non-padding) tokens processed in this step, prompt and output together."""

    step_time_s: float = 0.0
    """Wall time of this step."""


@dataclass(frozen=True)
class EvalMetrics:
    step: int
    epoch: float
    eval_loss: float
    """``eval_total_loss``: mean cross-entropy over the evaluation set's output tokens."""

    eval_token_accuracy: float
    """``eval_fraction_of_correct_next_step_preds``."""

    eval_num_predictions: int
    """``eval_num_predictions``: output tokens in the evaluation set."""


@dataclass(frozen=True)
class EpochSnapshot:
    """Gemini's tuned-model snapshot: one per finished epoch."""

    epoch: int
    step: int
    mean_loss: float
    compute_time_s: float
    """Wall time spent training in this epoch (evaluation excluded)."""


class ProgressSink(Protocol):
    def on_start(self, total_steps: int, steps_per_epoch: int, first_step: int) -> None:
        """Called once before the first step; ``first_step`` > 1 when resuming."""

    def on_step(self, metrics: StepMetrics) -> None: ...

    def on_eval(self, metrics: EvalMetrics) -> None: ...

    def on_epoch(self, snapshot: EpochSnapshot) -> None: ...

    def on_checkpoint(self, epoch: int, step: int, path: Path) -> None:
        """A complete checkpoint now exists at ``path`` (written to a temp folder, renamed)."""

    def log(self, key: str, **params) -> None:
        """A line for the job's log: a message key of ``training.core.messages`` and its values
        (the reader sees it in their language)."""


class NullSink:
    """A sink that drops everything (benchmarks, calibration)."""

    def on_start(self, total_steps: int, steps_per_epoch: int, first_step: int) -> None:
        pass

    def on_step(self, metrics: StepMetrics) -> None:
        pass

    def on_eval(self, metrics: EvalMetrics) -> None:
        pass

    def on_epoch(self, snapshot: EpochSnapshot) -> None:
        pass

    def on_checkpoint(self, epoch: int, step: int, path: Path) -> None:
        pass

    def log(self, key: str, **params) -> None:
        pass


@dataclass(frozen=True)
class TrainResult:
    status: Literal["completed", "stopped", "early_stopped"]
    """completed: all epochs ran; stopped: ``should_stop`` said so (cancel); early_stopped: eval
    token accuracy stopped improving."""

    last_step: int
    adapter_dir: Path | None
    """The adapter the tuned model uses: the final (or best) one; on ``stopped``, the last
    checkpoint's adapter (a partial model), or None when no checkpoint was written yet."""

    best_step: int | None = None
    """Step of the best evaluation, when an eval set was used."""

    final_loss: float | None = None
    """Mean training loss of the last epoch (or of the steps run, when stopped)."""


@dataclass(frozen=True)
class Estimate:
    """What the New-tuned-model form shows before starting: measured, not guessed."""

    train_examples: int
    steps_per_epoch: int
    total_steps: int
    seconds_per_step: float
    """Measured by running a few real steps on this machine (calibration)."""

    total_seconds: float
    device: str
    precision: str
