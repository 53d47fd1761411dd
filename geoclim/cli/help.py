"""The argparse help format of the plain commands (``geoclim``, its subcommands, the demo)."""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Help that shows every option's default and keeps the examples' line breaks.

    An option whose help already says its default in words (``(default: off)``) keeps it.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)
