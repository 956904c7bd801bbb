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


def missing(path: str | Path) -> SpikevizError:
    """The error for a path that does not exist, saying where it was looked for: a name alone
    hid that its folder was missing or mistyped."""
    folder = Path(path).parent
    return SpikevizError(f"no such file or folder in {folder}"
                         + ("" if folder.is_dir() else " (that folder does not exist either)"), path)


class DataWarning(UserWarning):
    """Something a reader changed or ignored to make sense of the data (the CLI prints it as one
    line `spikeviz: warning: ...`)."""
