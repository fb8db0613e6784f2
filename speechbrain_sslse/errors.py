"""Errors that carry a complete, user-facing message (the commands print them as one line)."""


class ConfigError(ValueError):
    """A configuration that cannot work: unknown SSL type or mode, missing SSL folder,
    unreachable hub id, an override that matches no key."""
