"""What the UI needs from the rest of the studio, built once by app.py and handed to each tab."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from storage.db import Store
from training import models
from training.core.limits import DEFAULT_LIMITS, DatasetLimits

if TYPE_CHECKING:
    from training.jobs.runner import JobRunner

log = logging.getLogger("studio")


@dataclass
class StudioContext:
    data_dir: Path
    store: Store
    runner: "JobRunner | None" = None
    """Runs tuning jobs in the background (None in tools that only edit datasets)."""
    limits: DatasetLimits = DEFAULT_LIMITS
    _bundled_ready: threading.Event = field(default_factory=threading.Event, repr=False)
    _bundled_error: list = field(default_factory=list, repr=False)

    def prepare_bundled_in_background(self) -> None:
        """Convert the bundled model once (about 20 s on first run) without delaying start-up."""

        def work():
            try:
                models.prepare_bundled_model(self.data_dir)
            except Exception as error:  # shown in the UI on use; the traceback goes to the log
                log.exception("preparing the bundled model failed")
                self._bundled_error.append(error)
            finally:
                self._bundled_ready.set()

        threading.Thread(target=work, name="prepare-bundled-model", daemon=True).start()

    def base_model_names(self) -> list[str]:
        return [ref.name for ref in models.list_base_models(self.data_dir)]

    def tokenizer(self, model_name: str | None):
        """The tokenizer for counting tokens, or None while the bundled model is being prepared."""
        name = model_name or models.BUNDLED_MODEL
        if name == models.BUNDLED_MODEL and not self._bundled_ready.is_set():
            return None
        if name == models.BUNDLED_MODEL and self._bundled_error:
            raise self._bundled_error[0]
        return models.load_tokenizer(models.resolve_model(name, self.data_dir))
