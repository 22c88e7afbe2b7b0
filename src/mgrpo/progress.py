"""Progress of long loops: a tqdm bar on a terminal, plain periodic lines in a log.

A bar redraws itself with carriage returns; in a file (a `mgrpo compare` log, CI, `nohup`)
every redraw stays, and a 300-step loop leaves one line of tens of kilobytes. So
`progress(...)` gives a tqdm bar only when the stream is a terminal, and otherwise a
`LineProgress` that prints one complete line about every tenth of the loop (and at its end):

    mgrpo m-grpo: step 20/60 (33%), 41 s, reward=0.734 H=0.052

`quiet_library_bars()` does the same for the bars of Hugging Face libraries (transformers'
"Loading weights", huggingface_hub downloads): off when stderr is not a terminal. Standard
library only (tqdm is imported only for a terminal).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from typing import Protocol, TextIO

__all__ = ["LineProgress", "Progress", "progress", "quiet_library_bars"]

LINES_PER_LOOP = 10  # LineProgress prints about this many lines over a loop


class Progress(Protocol):
    """What the loops use of a progress display (tqdm's names)."""

    def update(self, n: int = 1) -> object: ...

    def set_postfix(self, ordered_dict: Mapping[str, object] | None = None,
                    refresh: bool = True) -> None: ...

    def write(self, s: str) -> None: ...

    def close(self) -> None: ...


class LineProgress:
    """Plain progress lines: one every `every` updates and one at the end of the loop."""

    def __init__(self, total: int, *, desc: str, unit: str = "it", initial: int = 0,
                 disable: bool = False, stream: TextIO | None = None,
                 every: int | None = None) -> None:
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.disable, self.stream = disable, stream or sys.stderr
        self.every = every or max(1, (total - initial) // LINES_PER_LOOP)
        self.postfix: dict[str, object] = {}
        self.start, self._printed = time.perf_counter(), initial

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.n - self._printed >= self.every or self.n >= self.total:
            self._line()

    def set_postfix(self, ordered_dict: Mapping[str, object] | None = None,
                    refresh: bool = True) -> None:
        self.postfix = dict(ordered_dict or {})

    def write(self, s: str) -> None:
        print(s, file=self.stream, flush=True)

    def close(self) -> None:
        if self.n > self._printed:  # the loop ended between two lines (stopped early)
            self._line()

    def _line(self) -> None:
        self._printed = self.n
        if self.disable:
            return
        share = f" ({100 * self.n // self.total}%)" if self.total else ""
        values = " ".join(f"{k}={v}" for k, v in self.postfix.items())
        self.write(f"{self.desc}: {self.unit} {self.n}/{self.total}{share}, "
                   f"{time.perf_counter() - self.start:.0f} s" + (f", {values}" if values else ""))


def progress(total: int, *, desc: str, unit: str = "it", initial: int = 0, enabled: bool = True,
             stream: TextIO | None = None) -> Progress:
    """A tqdm bar when `stream` (default stderr) is a terminal, else `LineProgress`."""
    stream = stream or sys.stderr
    if stream.isatty():
        # lazy, start-up: tqdm only for a terminal
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not enabled,
                    dynamic_ncols=True, file=stream)
    return LineProgress(total, desc=desc, unit=unit, initial=initial, disable=not enabled,
                        stream=stream)


def quiet_library_bars(stream: TextIO | None = None) -> None:
    """Turn the Hugging Face libraries' bars off when `stream` (stderr) is not a terminal.
    Call before transformers / huggingface_hub are imported: they read the variable then."""
    if not (stream or sys.stderr).isatty():
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
