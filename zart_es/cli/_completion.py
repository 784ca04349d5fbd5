"""``zart-es completion bash|zsh|fish``: a shell completion script, written by shtab from
the same argument parser that parses the command line, so it knows every subcommand,
nested subcommand and option, and never goes stale.

Install it once per shell (README: CLI)::

    zart-es completion bash > ~/.local/share/bash-completion/completions/zart-es
    zart-es completion zsh > "${fpath[1]}/_zart-es"
    zart-es completion fish > ~/.config/fish/completions/zart-es.fish
"""

from __future__ import annotations

import argparse

from zart_es.cli._common import AddCommand, Handler

SHELLS = ("bash", "zsh", "fish")


def add_commands(add: AddCommand) -> dict[str, Handler]:
    """The ``completion`` subcommand."""
    completion_ = add("completion", "print a shell completion script (bash, zsh or fish)")
    completion_.add_argument("shell", choices=SHELLS)
    return {"completion": completion}


async def completion(args: argparse.Namespace) -> int:
    """Print the script for ``args.shell`` on stdout."""
    import shtab

    from zart_es.cli._main import build_parser

    print(shtab.complete(build_parser(), shell=args.shell))
    return 0
