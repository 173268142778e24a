"""The error of a configuration the service cannot run with, apart from `config` so that any
layer may raise it (the site configuration does) without importing every setting."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value the service cannot run with."""
