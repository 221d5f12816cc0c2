"""Refusals the extension reports to its caller (fit, scoring, views, import), with a SQLSTATE and a hint."""
from __future__ import annotations

import math

# SQLSTATEs (PostgreSQL appendix A) used by the extension
INVALID_PARAMETER_VALUE = "22023"
NULL_VALUE_NOT_ALLOWED = "22004"
UNDEFINED_COLUMN = "42703"
DATATYPE_MISMATCH = "42804"
UNDEFINED_TABLE = "42P01"
DUPLICATE_OBJECT = "42710"
UNIQUE_VIOLATION = "23505"
NO_DATA_FOUND = "P0002"
WRONG_OBJECT_TYPE = "42809"
OBJECT_NOT_IN_PREREQUISITE_STATE = "55000"
DATETIME_FIELD_OVERFLOW = "22008"
UNDEFINED_OBJECT = "42704"
DISK_FULL = "53100"
CONFIGURATION_LIMIT_EXCEEDED = "53400"
IO_ERROR = "58030"
READ_ONLY_SQL_TRANSACTION = "25006"
INSUFFICIENT_PRIVILEGE = "42501"
INVALID_SCHEMA_NAME = "3F000"

# hints shared by every function that looks a model up
LIST_MODELS = "List models with ml.woe_anchor_models()."
ACTIVATE_ONE = ("Activate a stored model with ml.woe_anchor_activate(model_key) (ml.woe_anchor_models() lists "
                "them), or fit one with CALL ml.fit_woe_anchor(...).")


class Refusal(Exception):
    """A refusal the caller can act on, raised before anything is written; never a traceback."""

    def __init__(self, sqlstate: str, message: str, hint: str | None = None,
                 detail: str | None = None):
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message
        self.hint = hint
        self.detail = detail

    def raise_with(self, plpy):
        """Re-raise as a PostgreSQL error (never a Python traceback)."""
        extra = {k: v for k, v in (("detail", self.detail), ("hint", self.hint)) if v is not None}
        plpy.error(self.message, sqlstate=self.sqlstate, **extra)


def sql_text(value) -> str:
    """An argument as SQL would print it in a message: NULL, NaN, Infinity, {1,2} (not Python's None,
    nan, inf, [1, 2])."""
    if value is None:
        return "NULL"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, (list, tuple)):
        return "{" + ",".join(sql_text(v) for v in value) + "}"
    return str(value)


def source_changed(qualified: str, hint: str = "Run the CALL in a REPEATABLE READ transaction, or retry."):
    """The refusal of a fit whose source changed between its statements (counts disagree)."""
    raise Refusal("40001", f"source {qualified} changed while the fit was reading it", hint=hint)


def duplicate_keys(qualified: str):
    """The refusal of a source with a TRAIN SOLD key twice (found when the scores' key is built)."""
    raise Refusal(UNIQUE_VIOLATION,
                   f"source {qualified} has duplicate (generation, listing_id, t0) keys among TRAIN SOLD rows",
                   hint="Each listing snapshot must appear once; deduplicate in a view.")


def reported(plpy, fn, *args):
    """Run ``fn``; a Refusal becomes a PostgreSQL error with its SQLSTATE and hint."""
    try:
        return fn(*args)
    except Refusal as e:
        e.raise_with(plpy)
