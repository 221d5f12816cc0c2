"""The activation policy's rules, in one place: which checks and retention settings exist, what a
check compares, and the verdict on a model's stored figures.

The fit measures (``gate.py``: the checks on its figures, and the drop against
the active model, which reads the source with the caller's rights). The
persist entry point, which stores the model and logs the verdict as the
extension's owner, settles it again here from the figures it stores, and takes
only ``max_auc_drop`` as the fit measured it: a caller of the entry point
cannot log a verdict its model's own figures contradict.
"""
from __future__ import annotations

import json
import math

from . import errors
from .catalog import MAX_DAYS
from .errors import Refusal

CHECKS = ("min_train_sold", "min_oof_auc", "min_eval_auc", "max_auc_drop")
RETENTION = ("keep_models", "keep_days")
# each setting's range, and whether it counts: an AUC and a drop of AUC are in [0, 1]; a count of
# models is an int in the pruning SQL; an age, at most MAX_DAYS
RANGES = {"min_train_sold": (0, 2 ** 63 - 1, True), "min_oof_auc": (0, 1, False), "min_eval_auc": (0, 1, False),
          "max_auc_drop": (0, 1, False), "keep_models": (0, 2 ** 31 - 1, True), "keep_days": (0, MAX_DAYS, False)}


def parse(doc: str) -> dict:
    """A policy given as a JSON object, each name and value checked."""
    given = json.loads(doc)
    unknown = sorted(set(given) - set(CHECKS) - set(RETENTION))
    if unknown:
        raise Refusal(errors.INVALID_PARAMETER_VALUE, f"unknown policy: {', '.join(map(repr, unknown))}",
                      hint=f"The gate's checks: {', '.join(CHECKS)}; retention: {', '.join(RETENTION)}.")
    for name, value in given.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise Refusal(errors.INVALID_PARAMETER_VALUE, f"policy {name} must be a finite number, got {value!r}")
        low, high, whole = RANGES[name]
        if not low <= value <= high or (whole and value != int(value)):
            raise Refusal(errors.INVALID_PARAMETER_VALUE,
                          f"policy {name} must be {'a whole number' if whole else 'a number'} from {low} to {high}, "
                          f"got {value!r}")
    return {name: float(value) for name, value in given.items()}


def read(plpy) -> dict:
    """The policy rows (ml.woe_anchor_policy), with the rights of whoever runs this."""
    return parse(json.dumps({r["name"]: r["value"] for r in plpy.execute("SELECT name, value FROM ml.woe_anchor_policy")}))


def checks(policy: dict) -> dict:
    return {name: value for name, value in policy.items() if name in CHECKS}


def figure(name: str, registry: dict):
    """What a check other than max_auc_drop compares: the model's stored figure."""
    if name == "min_train_sold":
        return registry["n_train_sold"]
    if name == "min_oof_auc":  # in-sample without OOF
        return registry["oof_auc"] if registry["oof"] else registry["insample_auc"]
    return registry["eval_auc"]


def check(name: str, limit: float, value, **more) -> dict:
    """One check's entry of a verdict: a figure that cannot be measured (None) fails."""
    passed = value is not None and (value <= limit if name == "max_auc_drop" else value >= limit)
    return {"limit": limit, "value": value, "passed": passed, **more}


def settle(policy: dict, registry: dict, measured) -> dict:
    """The verdict on a model: every check of ``policy`` on its stored figures, and max_auc_drop as
    the fit ``measured`` it (missing or malformed: failed)."""
    out = {}
    for name, limit in checks(policy).items():
        if name != "max_auc_drop":
            out[name] = check(name, limit, figure(name, registry))
            continue
        drop = (measured or {}).get("checks", {}).get(name) if isinstance(measured, dict) else None
        value = drop.get("value") if isinstance(drop, dict) else None
        value = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        more = {k: v for k, v in drop.items() if k not in ("limit", "value", "passed")} if isinstance(drop, dict) else {}
        out[name] = check(name, limit, value, **more)
    return {"passed": all(c["passed"] for c in out.values()), "checks": out}
