"""One workflow at a time writes a results folder.

Snakemake locks the folder it runs in (its ``.snakemake``), so two checkouts, or one checkout run from two working
folders, whose configurations name one absolute ``results`` folder would both write it. This lock lies in the
results folder itself. It records the process and the machine that hold it; a lock left by a process of this
machine that no longer runs (a killed workflow) is taken over, one of another machine is refused with the file to
delete. Standard library only: the Snakefile calls it.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

LOCK_FILE = ".comcl.lock"


class ResultsLocked(RuntimeError):
    """The results folder is being written by another workflow."""


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(lock: Path) -> dict[str, Any] | None:
    try:
        return json.loads(lock.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def acquire(results: str | Path, checkout: str | Path) -> None:
    """Take the lock of ``results`` for this process, or raise :class:`ResultsLocked` saying who holds it."""
    folder = Path(results)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_FILE
    mine = {"pid": os.getpid(), "host": socket.gethostname(), "checkout": str(Path(checkout).resolve())}
    for _ in range(2):
        try:
            with open(lock, "x", encoding="utf-8") as handle:
                json.dump(mine, handle)
            return
        except FileExistsError:
            holder = _holder(lock)
            stale = holder is not None and holder.get("host") == mine["host"] and not _running(int(holder.get("pid", 0)))
            if not stale:
                who = (
                    "an unreadable lock"
                    if holder is None
                    else f"process {holder.get('pid')} on {holder.get('host')} (checkout {holder.get('checkout')})"
                )
                raise ResultsLocked(
                    f"the results folder {folder} is being written by another workflow: {who}. Wait for it to finish, "
                    f"or, if no workflow runs there any more, delete {lock}"
                ) from None
            lock.unlink(missing_ok=True)
    raise ResultsLocked(f"could not take the lock {lock}: another workflow took it first")


def release(results: str | Path) -> None:
    """Give the lock back, if this process holds it (a refused second workflow leaves the first one's alone)."""
    lock = Path(results) / LOCK_FILE
    holder = _holder(lock)
    if holder is not None and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        lock.unlink(missing_ok=True)
