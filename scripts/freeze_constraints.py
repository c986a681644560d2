"""Write constraints.txt: the exact versions of rlhf-toolkit[dev,postgres]'s dependencies installed here.

    python3 scripts/freeze_constraints.py > constraints.txt

Run it in an environment the test suite has just passed in; scripts/setup.sh installs with
`-c constraints.txt`, so a fresh machine then resolves to exactly what was tested. Unlike a
plain `pip freeze` it keeps only the project's dependency closure (not whatever else the
machine has), and it leaves out torch, its CUDA/triton wheels and what only torch needs:
setup keeps a torch that is already installed (a GPU user's CUDA build, which may want
another sympy) and otherwise installs the CPU build it names.
"""

from __future__ import annotations

import re
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PROJECT = "rlhf-toolkit"
EXTRAS = {"dev", "postgres", "smollm2"}
NOT_PINNED = re.compile(r"^(rlhf-toolkit|torch|torchvision|torchaudio|triton|nvidia-.*|cuda-.*)$")


def requirements(dist: metadata.Distribution, extras: set[str]) -> list[Requirement]:
    """The requirements of `dist` that apply with `extras` (markers evaluated here)."""
    out = []
    for text in dist.requires or []:
        req = Requirement(text)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (extras or {""})):
            out.append(req)
    return out


def closure() -> dict[str, metadata.Distribution]:
    """Every installed distribution the project needs, directly or not, by canonical name."""
    found: dict[str, tuple[metadata.Distribution, set[str]]] = {}
    todo = [(PROJECT, set(EXTRAS))]
    while todo:
        name, extras = todo.pop()
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:  # an optional dependency for another platform
            continue
        key = canonicalize_name(name)
        if key in found and extras <= found[key][1]:
            continue
        found[key] = (dist, extras | (found[key][1] if key in found else set()))
        if key == PROJECT or not NOT_PINNED.match(key):  # not into torch: a GPU user's torch needs its own sympy, ...
            todo += [(r.name, set(r.extras)) for r in requirements(dist, extras)]
    return {key: dist for key, (dist, _) in found.items()}


def main() -> None:
    print("# Exact versions the test suite passed with (scripts/freeze_constraints.py); torch is not pinned here.")
    for key, dist in sorted(closure().items()):
        if not NOT_PINNED.match(key):
            print(f"{dist.metadata['Name']}=={dist.version}")


if __name__ == "__main__":
    main()
