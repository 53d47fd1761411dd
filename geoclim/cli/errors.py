"""Turn a user's mistake into a clear message and exit status 2, never a bare traceback.

The one error printer of every geoclim command: :func:`friendly_errors` wraps a plain entry
point, :func:`exit_with` prints one ``error: ...`` line and exits 2, and :func:`user_error`
finds the user-fixable error behind what Hydra raises (it wraps errors of instantiated
objects, and reports config mistakes as OmegaConf exceptions).
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

from geoclim.errors import ConfigError, GeoclimError

F = TypeVar("F", bound=Callable)


def user_error(err: BaseException) -> GeoclimError | None:
    """The user-fixable error behind ``err``, or ``None`` for a bug.

    Follows ``__cause__`` (Hydra's ``InstantiationException`` wraps the error a constructor
    raised) and turns OmegaConf's config errors (a missing mandatory value, an unknown key)
    into a :class:`ConfigError` naming the config key.
    """
    config_errors: tuple[type[BaseException], ...] = ()
    wrapper: tuple[type[BaseException], ...] = ()
    if "omegaconf" in sys.modules:  # no OmegaConf error can exist before it is imported
        from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

        config_errors = (OmegaConfBaseException,)
        if "hydra" in sys.modules:
            from hydra.errors import InstantiationException

            wrapper = (InstantiationException,)
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, GeoclimError):
            return seen
        if isinstance(seen, config_errors) and not isinstance(seen, wrapper):
            message = str(seen).splitlines()[0] if str(seen) else type(seen).__name__
            key = getattr(seen, "full_key", None)
            if isinstance(seen, MissingMandatoryValue) and key:
                message = f"no value for {key!r}; set it on the command line: {key}=..."
            elif key:
                message = f"{message} (config key {key!r})"
            return ConfigError(message)
        seen = seen.__cause__
    return None


def exit_with(err: GeoclimError) -> NoReturn:
    """Print ``error: <message>`` on stderr and exit with status 2."""
    logging.getLogger("geoclim").debug("user error", exc_info=err)
    sys.stdout.flush()
    print(f"error: {err}", file=sys.stderr)
    raise SystemExit(2) from None


def friendly_errors(fn: F) -> F:
    """Run ``fn``; a user-fixable error (see :func:`user_error`) exits 2 with one line."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            user = user_error(err)
            if user is None:
                raise
            exit_with(user)

    return wrapper  # type: ignore[return-value]
