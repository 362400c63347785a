"""User-facing errors.

Every exception here carries a message that is safe to show to a person and says what to do.
The studio turns them into ``gr.Error`` at the handler edge; the command line prints them.
"""

from training.core.messages import say


class StudioError(Exception):
    """Base class: the message is shown to the user as it is. ``field`` names the part of a
    request it concerns (``dataset``, ``base_model``, ``description``...), for callers such as the
    API that name that part in their own words."""

    def __init__(self, *args, field: str | None = None):
        super().__init__(*args)
        self.field = field
        self.key, self.params = "", {}

    @classmethod
    def of(cls, key: str, /, *, field: str | None = None, **params) -> "StudioError":
        """The error whose message is the catalogue's ``key`` in the current page's language
        (``training.core.messages``). It keeps the key and its values, so that a reader in another
        language (a failed job's log) reads it in theirs."""
        params = {k: v if isinstance(v, (str, int, float)) else str(v) for k, v in params.items()}
        error = cls(say(key, **params), field=field)
        error.key, error.params = key, params
        return error

    def said(self) -> str:
        """The message in the current reader's language (as raised, for one without a key)."""
        return say(self.key, **self.params) if self.key else str(self)


class InvalidRequestError(StudioError):
    """A name, id or text in a request is not allowed as given (too long, wrong characters)."""


class UnreadableFileError(StudioError):
    """The file cannot be read at all (wrong type, binary garbage, hostile archive, too big)."""


class DatasetError(StudioError):
    """The examples or the prompt template are not usable as given."""


class ModelError(StudioError):
    """A base model cannot be found, prepared or loaded."""


class NotFoundError(StudioError):
    """A stored object (dataset, version, model) does not exist."""


class StorageFullError(StudioError):
    """The disk holding the data folder has no room left for what the studio must write."""


class TrainingError(StudioError):
    """Training cannot go on as set up (out of memory, an unusable checkpoint, no examples)."""


class ConflictError(StudioError):
    """The object cannot be made as asked because another one holds its name or id."""
