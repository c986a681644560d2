"""Folders that appear whole or not at all.

A folder is built in a temporary sibling, its `COMPLETE.json` written last, and then renamed
into place, so a killed build never leaves a folder that looks finished. A complete folder
is reused only if its marker records the same fingerprint; one built from other settings is
an error rather than silently reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Callable

from alignment.errors import UserError

MARKER = "COMPLETE.json"


def fingerprint(payload: dict) -> str:
    """A short, stable hash of the settings a folder was built from."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def build_atomically(target: Path, fingerprint: str, build: Callable[[Path], dict], what: str = "settings") -> dict:
    """Run `build(tmp)` unless `target` is complete; return the marker's contents.

    When another process finishes the same folder first, its result is taken (the rename
    of the second one fails because the target exists, and the target is then complete).
    """
    marker = target / MARKER
    if marker.is_file():
        info = json.loads(marker.read_text())
        if info.get("fingerprint") != fingerprint:
            raise UserError(f"{target} was built with other {what}; delete it or use another folder")
        return info
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()  # not mkdtemp: its 0700 mode would stick to the finished folder
    try:
        info = {"fingerprint": fingerprint, **build(tmp)}
        with open(tmp / MARKER, "w", encoding="utf-8") as f:
            json.dump({"stage": target.name, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), **info}, f, indent=2)
        if target.exists() and not marker.is_file():  # an interrupted earlier build: no marker, so not done
            shutil.rmtree(target)
        try:
            os.replace(tmp, target)
        except OSError:
            if not marker.is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # a concurrent build won the race
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return json.loads(marker.read_text())
