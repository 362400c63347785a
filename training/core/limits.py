"""Dataset limits: every default in one place, with its unit and its source.

The studio states these in the UI and enforces them with a message that names the limit.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetLimits:
    min_examples: int = 20
    """Fewer examples than this cannot start a job (Gemini tuning guide)."""

    recommended_examples: int = 100
    """Below this the report gives guidance: 100-500 examples are recommended (Gemini)."""

    max_examples: int = 10_000
    """Most examples in one dataset version (Vertex's per-dataset limit)."""

    max_file_bytes: int = 20 * 1024 * 1024
    """Largest uploaded file, in bytes. Gemini's client takes 4 MB; a local studio allows 20 MB."""

    max_input_chars: int = 40_000
    """Most characters in one example's input, all input fields together (Gemini)."""

    max_output_chars: int = 5_000
    """Most characters in one example's output (Gemini)."""

    max_input_tokens: int = 8_192
    """Longer inputs are truncated in training (Vertex); such rows are listed before training."""

    max_output_tokens: int = 1_024
    """Longer outputs are truncated in training (Vertex); such rows are listed before training."""

    max_field_chars: int = 1_000_000
    """A single cell or JSON string longer than this makes the file unreadable (hostile CSV)."""

    max_unpacked_bytes: int = 200 * 1024 * 1024
    """Most bytes an XLSX archive may unpack to (zip-bomb bound)."""

    max_compression_ratio: int = 200
    """Largest uncompressed/compressed ratio of an XLSX archive member (zip-bomb bound)."""

    min_eval_examples: int = 10
    """Smallest evaluation set (Vertex)."""

    max_eval_examples: int = 250
    """Largest evaluation set (Vertex)."""


DEFAULT_LIMITS = DatasetLimits()
