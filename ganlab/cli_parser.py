"""argparse for ganlab's commands, with its errors in ganlab's one-line form.

argparse prints its whole usage block, then ``<prog>: error: ...``; every other ganlab error is one
line that names the bad value, so a bad flag says so in the same words (the usage stays in --help).
"""

from __future__ import annotations

import argparse
from typing import NoReturn


class OneLineParser(argparse.ArgumentParser):
    def __init__(self, *args, command: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.command = command  # e.g. "ganlab sweep", as the command's other errors begin

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.command}: error: {message} (see --help)\n")
