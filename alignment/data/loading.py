"""Load a named data source as validated rows of one format."""

from __future__ import annotations

from alignment.data.files import read_rows
from alignment.data.rows import Kind, validate_rows


def load_rows(path: str, kind: Kind | None = None, source: str | None = None) -> tuple[list[dict], Kind]:
    """Rows of `path`, validated; `kind=None` detects the format from the first row."""
    rows = read_rows(path)
    return rows, validate_rows(rows, kind, source or str(path))
