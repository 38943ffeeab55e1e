"""The one exception family the CLI turns into a clean one-line error."""


class FfhqToolsError(Exception):
    """A user-facing error: the message names the file, field or flag at fault."""


class WeightsError(FfhqToolsError):
    """A registered network file is missing, unknown or fails verification."""


class HashMismatchError(WeightsError):
    """A file's SHA-256 differs from the one the registry (or the user) expects."""
