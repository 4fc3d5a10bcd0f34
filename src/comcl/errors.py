"""One exception type for bad input, so every stage reports it the same way."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Input that the pipeline cannot use: names the file, the line and what to do about it.

    ``line`` is the 1-based line number as an editor shows it (a CSV header is line 1).
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.path = None if path is None else Path(path)
        self.line = line
        self.hint = hint
        where = ""
        if path is not None:
            where = f"{path}"
            if line is not None:
                where += f", line {line}"
            where += ": "
        text = where + message
        if hint:
            text += f"\n  What to do: {hint}"
        super().__init__(text)
