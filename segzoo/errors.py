"""User-facing errors: bad input that deserves one clear line, not a traceback."""

__all__ = ["UserError", "ConfigError", "check_features"]


class UserError(Exception):
    """An error caused by the user's input (config, data, paths) with a message saying what to do.

    ``train_net.py`` and the tools print it as a single line and exit with status 2.
    """


class ConfigError(UserError, ValueError):
    """A config value that cannot work (also a ``ValueError`` for code that builds models directly)."""


def check_features(names, available, key: str) -> None:
    """Raise a ConfigError naming ``key`` if any of ``names`` is not in ``available``
    (e.g. the backbone's output shapes)."""
    missing = [f for f in names if f not in available]
    if missing:
        raise ConfigError(f"{key} {missing} are not backbone outputs {sorted(available)}")
