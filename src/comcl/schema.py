"""A configuration that the schema refuses, told in one short message.

Snakemake's ``validate`` reports a refusal with the whole schema printed after it (some 1,800
lines for this workflow's), which buries the one line that matters. This module turns jsonschema's
error into where it is (the key path), what is wrong, and, for a misspelt key, the keys that
section has. Standard library only: it runs when the workflow loads, in Snakemake's environment.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, cast

SCHEMA_FILE = "workflow/schemas/config.schema.yaml"
VARIANT_SCHEMA_FILE = "workflow/schemas/variant.schema.yaml"

# Keys that have a new name, per schema: (section, old key) -> the new key. Refused with the new name, where the
# schema alone would call the old one unknown.
RENAMED_KEYS = {
    SCHEMA_FILE: {
        ("pretrain", "input_size"): "pretrain.view_size",
        ("pretrain", "image_size"): "pretrain.image_view_size",
    },
    VARIANT_SCHEMA_FILE: {("spl", "threshold"): "spl.rule (a variant with spl.enabled false sets nothing else in spl)"},
}


def renamed_problem(document: Any, schema_file: str = SCHEMA_FILE, where: str = "configuration") -> str | None:
    """A refusal naming every old key of ``document`` (a configuration, or a variant for
    ``VARIANT_SCHEMA_FILE``) with its new name."""
    found = [
        f"{section}.{key} is now {new}"
        for (section, key), new in RENAMED_KEYS[schema_file].items()
        if isinstance(document, Mapping) and isinstance(document.get(section), Mapping) and key in document[section]
    ]
    if not found:
        return None
    return f"{where} error: renamed keys: " + "; ".join(found) + f"\n  Every key, with its meaning and default: {schema_file}"


class _ValidationError(Protocol):
    """What this module reads of jsonschema's ValidationError (jsonschema is not imported here, and ships no types)."""

    absolute_path: Sequence[str | int]
    message: str
    validator: str
    instance: Any
    schema: Mapping[str, Any]


def config_problem(error: BaseException, schema_file: str = SCHEMA_FILE) -> str:
    """The message for a refused configuration: ``error`` is Snakemake's WorkflowError, which keeps
    jsonschema's ValidationError as its context; without one, its first two lines."""
    if not hasattr(error.__context__, "absolute_path"):
        return "\n".join(str(error).splitlines()[:2])
    cause = cast(_ValidationError, error.__context__)
    where = ".".join(str(part) for part in cause.absolute_path) or "the top level"
    message = f"configuration error at {where}: {cause.message}"
    if cause.validator == "additionalProperties":
        message += _known_keys(cause.instance, cause.schema)
    return f"{message}\n  Every key, with its meaning and default: {schema_file}"


def _known_keys(instance: Any, schema: Mapping[str, Any]) -> str:
    """The keys the section has, and the closest to each unknown one: a misspelling is the usual cause."""
    known = list(schema.get("properties", {}))
    if not known or not isinstance(instance, Mapping):
        return ""
    unknown = [key for key in instance if key not in known]
    guesses = [f"{key!r} -> {match[0]!r}" for key in unknown if (match := difflib.get_close_matches(str(key), known, n=1))]
    text = f"\n  This section's keys: {', '.join(known)}"
    return text + (f"\n  Did you mean: {'; '.join(guesses)}" if guesses else "")


# Far more values than any configuration of this workflow holds (the paper's has a few hundred).
MAX_VALUES = 100_000


def size_problem(config: Any, limit: int = MAX_VALUES) -> str | None:
    """A refusal when the configuration holds more than ``limit`` values once YAML's aliases are expanded.

    An alias is a reference, so nine nested levels of nine aliases load at once, but anything that walks or
    prints the document (the schema's validation does both) meets 9^9 values and runs for hours. The walk
    here stops as soon as it has counted past the limit.
    """
    count, stack = 0, [config]
    while stack:
        value = stack.pop()
        count += 1
        if count > limit:
            return (
                f"configuration error: the configuration holds more than {limit:,} values once its YAML aliases (*name) "
                "are expanded; write the repeated parts out, or use fewer nested aliases"
            )
        if isinstance(value, Mapping):
            stack.extend(value.values())
        elif isinstance(value, list | tuple):
            stack.extend(value)
    return None
