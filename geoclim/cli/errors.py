"""Turn a user's mistake into a clear message and exit status 2, never a bare traceback."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import TypeVar

from geoclim.errors import GeoclimError

F = TypeVar("F", bound=Callable)


def friendly_errors(fn: F) -> F:
    """Run ``fn``; print a :class:`GeoclimError` as ``error: ...`` and exit with status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except GeoclimError as err:
            logging.getLogger("geoclim").debug("user error", exc_info=True)
            sys.stdout.flush()
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper  # type: ignore[return-value]
