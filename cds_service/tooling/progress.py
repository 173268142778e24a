"""A progress counter on stderr for long runs, quiet for short ones and in pipes."""

from __future__ import annotations

import sys
from typing import TextIO

# Runs longer than this show progress even when stderr is not a terminal (CI logs).
LONG_RUN = 20
_LINE_EVERY = 10


class Progress:
    def __init__(
        self,
        total: int,
        label: str,
        stream: TextIO | None = None,
        enabled: bool | None = None,
    ) -> None:
        self._stream = stream or sys.stderr
        self._total = total
        self._label = label
        self._tty = bool(getattr(self._stream, "isatty", lambda: False)())
        self._enabled = (self._tty or total > LONG_RUN) if enabled is None else enabled

    def update(self, done: int, name: str) -> None:
        if not self._enabled:
            return
        if self._tty:
            text = f"[{done}/{self._total}] {self._label} {name}"[:100]
            self._stream.write("\r\033[K" + text)
            self._stream.flush()
        elif done % _LINE_EVERY == 0 or done == self._total:
            self._stream.write(f"{self._label} {done}/{self._total}\n")
            self._stream.flush()

    def close(self) -> None:
        if self._enabled and self._tty:
            self._stream.write("\r\033[K")
            self._stream.flush()
