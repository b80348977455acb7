"""Errors a user can cause (bad params, missing files, unreachable tracking).

Stage entry points catch :class:`IlkdError`, print its one-line message and exit
with status 2, so a typo never shows up as a traceback or a half-trained run.
"""


class IlkdError(Exception):
    """Base class for user-facing errors; the message names the key or file."""


class ConfigError(IlkdError):
    """A params value is unknown, of the wrong type or out of range."""


class DataError(IlkdError):
    """A dataset is missing, malformed or fails its checksum."""


class CheckpointError(IlkdError):
    """A checkpoint or teacher model is missing, truncated or does not match."""


class TrackingError(IlkdError):
    """The MLflow tracking server cannot be reached."""


class TrainingDiverged(IlkdError):
    """The loss became non-finite."""
