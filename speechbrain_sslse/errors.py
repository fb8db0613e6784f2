"""Errors that carry a complete, user-facing message (the commands print them as one line)."""


class ConfigError(ValueError):
    """A configuration that cannot work: unknown SSL type or mode, missing SSL folder,
    unreachable hub id, an override that matches no key."""


class DataWarning(UserWarning):
    """A warning about the user's own data (input level, clipped output samples): it must
    reach them even when the commands run with -q, which silences third parties' notices."""
