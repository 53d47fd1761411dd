"""The argparse help format of the plain commands (``geoclim``, its subcommands, the demo)."""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Help that shows every option's default and keeps the examples' line breaks.

    An option whose help already says its default in words (``(default: off)``) keeps it;
    options without a default (``None``) and the off-switch of a pair of flags say nothing.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text.lower() or action.default is None or action.const is False:
            return action.help
        return super()._get_help_string(action)
