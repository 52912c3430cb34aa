"""Errors cnnlab raises on bad input: each carries one sentence saying what, where and how to fix.

The CLI prints them as ``error: <message>`` and exits with status 2; a traceback only with --debug.
"""


class CnnlabError(Exception):
    """Base of every error cnnlab raises for a mistake the user can fix."""


class ShapeError(CnnlabError):
    """A layer cannot take the shape that reaches it (found while building, before data flows)."""


class DataFormatError(CnnlabError):
    """A data file is malformed: wrong magic, truncated, not an image, an empty class folder."""


class DatasetNotFound(CnnlabError):
    """A named dataset is neither on disk nor downloadable (offline, bad address)."""


class CheckpointError(CnnlabError):
    """A checkpoint or run directory is missing, incomplete or corrupt."""


class ConfigError(CnnlabError):
    """A model or run configuration names an unknown layer, argument, model or value."""


class TrainingError(CnnlabError):
    """Training cannot go on: the loss became NaN or infinite."""


class OutputError(CnnlabError):
    """A file or folder cannot be written: no permission, a file in the way, a read-only or missing place,
    or a file name whose suffix names a format cnnlab cannot write."""
