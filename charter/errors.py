"""The one exception family of the charter package."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a charter, at a line of its source (``None`` when it has no line)."""

    line: int | None
    message: str

    def __str__(self) -> str:
        if self.line is None:
            return self.message
        return f"ligne {self.line} : {self.message}"


class CharterError(Exception):
    """Raised for any charter failure; carries every problem found, each with its line.

    The loader collects all problems before raising so that an author fixes a file in one pass.
    """

    def __init__(self, problems: Iterable[Problem]) -> None:
        ordered = tuple(sorted(problems, key=lambda p: (p.line is None, p.line or 0, p.message)))
        if not ordered:
            ordered = (Problem(None, "charte invalide"),)
        self.problems: tuple[Problem, ...] = ordered
        super().__init__("\n".join(str(p) for p in ordered))

    @classmethod
    def single(cls, message: str, line: int | None = None) -> CharterError:
        """An error with one problem."""
        return cls([Problem(line, message)])
