"""The files an MMDetection model file is made of, and one digest of their content.

The detector rules take the model file by content, not by its path or time stamp: a checkout that
is moved or cloned again (new paths, new time stamps) must not retrain the detectors and the ~80 jobs
after them, while an edit of the file, or of a ``_base_`` file it inherits from, must. Standard
library only: it runs when the workflow loads, in Snakemake's environment.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path


def model_files(path: str | Path) -> list[Path]:
    """``path`` and the ``_base_`` files it inherits from, recursively (MMEngine's ``_base_ = "x.py"``
    or a list of such names, relative to the file that names them), each once."""
    files: list[Path] = []
    pending = [Path(path)]
    while pending:
        file = pending.pop(0)
        if file in files:
            continue
        if not file.is_file():
            raise FileNotFoundError(f"detector model file {file} not found (named by {files[-1] if files else 'detector.model'})")
        files.append(file)
        pending += [file.parent / name for name in _bases(file)]
    return files


def _bases(file: Path) -> list[str]:
    """The names a model file's top-level ``_base_`` assignment gives, if any."""
    for node in ast.parse(file.read_text(), filename=str(file)).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "_base_" for target in node.targets
        ):
            value = ast.literal_eval(node.value)
            return [value] if isinstance(value, str) else list(value)
    return []


def model_digest(path: str | Path) -> str:
    """SHA-256 over the content of the model file and its bases, in inheritance order."""
    digest = hashlib.sha256()
    for file in model_files(path):
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()
