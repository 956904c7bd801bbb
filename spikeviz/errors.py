"""The one exception type spikeviz raises for bad input, with a message naming the file and the problem, and the warning for data a reader had to change."""
from __future__ import annotations

from pathlib import Path


class SpikevizError(ValueError):
    """Bad input: the message names the file (when there is one), what is wrong and what to do."""

    def __init__(self, problem: str, path: str | Path | None = None):
        self.path = None if path is None else Path(path)
        # One line, whatever a wrapped library's message held: the CLI prints it as one line.
        problem = " ".join(str(problem).split())
        self.problem = problem
        super().__init__(problem if path is None else f"{Path(path).name}: {problem}")


class DataWarning(UserWarning):
    """Something a reader changed or ignored to make sense of the data (the CLI prints it as one
    line `spikeviz: warning: ...`)."""
