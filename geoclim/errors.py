"""The geoclim error hierarchy.

Every error a user can fix is a :class:`GeoclimError`; the CLI prints its message and exits
with status 2 instead of a traceback. Messages name the file, variable, dim, field or option
at fault and say what was expected.
"""


class GeoclimError(Exception):
    """Base class of every error a user can fix."""


class SchemaError(GeoclimError, ValueError):
    """A dataset breaks the canonical-Dataset contract (dims, coords, names, units, dtype)."""


class IngestError(GeoclimError, ValueError):
    """A raw input file is malformed (missing columns, bad dates, wrong units...)."""


class ConfigError(GeoclimError, ValueError):
    """A configuration value or option is invalid."""


class DataError(GeoclimError, ValueError):
    """The data cannot serve the request (too short for a window, empty split, ...)."""
