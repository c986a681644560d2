"""Reading and writing row files: JSONL, Parquet, or a saved `datasets` folder.

Errors name the file and the line, because a 50,000-row JSONL with one bad line is the
normal case, and "JSONDecodeError: Expecting value: line 1 column 1" is no help there.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from alignment.errors import DataError, UserError


def _format_of(path: Path) -> str:
    if path.is_dir() or path.suffix == "":
        return "datasets"
    if path.suffix in (".jsonl", ".json"):
        return "jsonl"
    if path.suffix == ".parquet":
        return "parquet"
    raise DataError(f"{path}: unknown data format '{path.suffix}' (use .jsonl, .parquet or a datasets folder)")


def iter_rows(path: str | os.PathLike) -> Iterator[dict]:
    """Stream rows from a file without loading it whole (JSONL and Parquet)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    fmt = _format_of(path)
    if fmt == "jsonl":
        yield from _iter_jsonl(path)
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(path)
        except Exception as err:
            raise DataError(f"{path}: not a readable Parquet file ({err})") from None
        for batch in parquet.iter_batches(batch_size=4096):
            yield from batch.to_pylist()
    else:
        from datasets import load_from_disk

        try:
            ds = load_from_disk(str(path))
        except Exception as err:
            raise DataError(f"{path}: not a saved datasets folder ({err})") from None
        if hasattr(ds, "keys"):  # a DatasetDict: take 'train' or the only split
            split = "train" if "train" in ds else next(iter(ds.keys()))
            ds = ds[split]
        yield from ds


def _iter_jsonl(path: Path) -> Iterator[dict]:
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"{path}: row {lineno}: not UTF-8 text (byte {err.start})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}: row {lineno}: malformed JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}: row {lineno}: expected a JSON object, got {type(row).__name__}")
            yield row


def read_rows(path: str | os.PathLike) -> list[dict]:
    rows = list(iter_rows(path))
    if not rows:
        raise DataError(f"{path}: no rows (empty dataset)")
    return rows


def write_rows(rows: Iterable[dict], path: str | os.PathLike) -> int:
    """Write rows atomically; the format follows the suffix (no suffix: datasets folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = _format_of(path) if path.suffix else "datasets"
    rows = list(rows)
    if fmt == "jsonl":
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        tmp = path.with_name(f".{path.name}.tmp")
        pq.write_table(pa.Table.from_pylist(rows), tmp)
        os.replace(tmp, path)
    else:
        from datasets import Dataset

        tmp = path.with_name(f".{path.name}.tmp")
        Dataset.from_list(rows).save_to_disk(str(tmp))
        if path.exists():
            import shutil

            shutil.rmtree(path)
        os.replace(tmp, path)
    return len(rows)


def read_yaml(path: str | os.PathLike, what: str):
    """A small YAML settings file (gates, principles), or one line naming what is wrong with it."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} not found: {path}")
    try:
        return yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML ({getattr(err, 'problem', err)})") from None
