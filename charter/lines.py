"""A light line index over TOML source: where each table header and each key is.

``tomllib`` returns plain dicts without positions, yet an author needs « ligne 42 » in every
message. The file has already parsed when this runs, so the scanner only needs to track what can
hide a header or a key: multi-line strings, single-line strings, comments, and brackets of arrays
or inline tables spanning several lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_KEY_RE = re.compile(r"""^\s*("(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_-]+)\s*[.=]""")


@dataclass
class _Table:
    path: str
    line: int
    keys: dict[str, int] = field(default_factory=dict)


def _normalise_path(raw: str) -> str:
    return ".".join(part.strip().strip("\"'") for part in raw.split("."))


def _unquote(key: str) -> str:
    if len(key) >= 2 and key[0] == key[-1] and key[0] in "\"'":
        return key[1:-1]
    return key


class LineIndex:
    """Line numbers (1-based) of table headers and keys in a TOML text."""

    def __init__(self, text: str) -> None:
        self._tables: list[_Table] = [_Table("", 1)]
        self._arrays: dict[str, list[_Table]] = {}
        self._named: dict[str, _Table] = {"": self._tables[0]}
        self.line_count = max(1, len(text.splitlines()))
        self._scan(text)

    def _scan(self, text: str) -> None:
        open_string: str | None = None  # '"""' or "'''" while inside a multi-line string
        depth = 0  # open brackets/braces of a value spanning lines
        current = self._tables[0]
        for lineno, line in enumerate(text.splitlines(), start=1):
            if open_string is None and depth == 0:
                stripped = line.lstrip()
                if stripped.startswith("["):
                    current = self._header(stripped, lineno)
                    continue  # a header line holds no value to scan
                key = _KEY_RE.match(line)
                if key is not None:
                    current.keys.setdefault(_unquote(key.group(1)), lineno)
            open_string, depth = self._advance(line, open_string, depth)

    def _header(self, stripped: str, lineno: int) -> _Table:
        is_array = stripped.startswith("[[")
        end = stripped.find("]]" if is_array else "]")
        raw = stripped[2 if is_array else 1 : end if end >= 0 else len(stripped)]
        table = _Table(_normalise_path(raw), lineno)
        self._tables.append(table)
        if is_array:
            self._arrays.setdefault(table.path, []).append(table)
        else:
            self._named.setdefault(table.path, table)
        return table

    @staticmethod
    def _advance(line: str, open_string: str | None, depth: int) -> tuple[str | None, int]:
        i = 0
        n = len(line)
        while i < n:
            if open_string is not None:
                if open_string == '"""' and line[i] == "\\":
                    i += 2
                    continue
                if line.startswith(open_string, i):
                    open_string = None
                    i += 3
                    continue
                i += 1
                continue
            c = line[i]
            if c == "#":
                break
            if line.startswith('"""', i) or line.startswith("'''", i):
                open_string = line[i : i + 3]
                i += 3
            elif c == '"':
                i += 1
                while i < n and line[i] != '"':
                    i += 2 if line[i] == "\\" else 1
                i += 1
            elif c == "'":
                close = line.find("'", i + 1)
                i = n if close < 0 else close + 1
            else:
                if c in "[{":
                    depth += 1
                elif c in "]}":
                    depth = max(0, depth - 1)
                i += 1
        return open_string, depth

    def table(self, path: str, n: int | None = None) -> int | None:
        """Line of the header of table ``path`` (the ``n``-th entry of an array of tables)."""
        found = self._find(path, n)
        return None if found is None else found.line

    def key(self, path: str, n: int | None, key: str) -> int | None:
        """Line of ``key`` in table ``path`` (entry ``n``), else of the table's header."""
        found = self._find(path, n)
        if found is None:
            return None
        if path == "" and key not in found.keys:
            # A top-level name may be a table: its header is where it is declared.
            return self.section(key)
        return found.keys.get(key, found.line)

    def section(self, name: str) -> int | None:
        """Line of the first header of ``[name]``, ``[[name]]`` or one of its sub-tables."""
        for table in self._tables[1:]:
            if table.path == name or table.path.startswith(name + "."):
                return table.line
        return None

    def _find(self, path: str, n: int | None) -> _Table | None:
        if n is None:
            return self._named.get(path)
        entries = self._arrays.get(path, [])
        return entries[n] if 0 <= n < len(entries) else None
