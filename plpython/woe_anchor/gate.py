"""The activation gate: whether a new fit may replace the serving model.

An administrator sets the policy (ml.woe_anchor_set_policy: one row per check
in ml.woe_anchor_policy); every fit that would activate its model, by hand or
scheduled, must pass every check, or its model is kept but not activated (the
refusal, with every check's figures, goes to ml.woe_anchor_activations):

* ``min_train_sold``: at least this many TRAIN SOLD rows;
* ``min_oof_auc``: out-of-fold AUC at least this (in-sample AUC without OOF);
* ``min_eval_auc``: AUC on the 7 days after the cutoff at least this;
* ``max_auc_drop``: on those same rows, the active model's AUC less the new
  one's at most this (the active model scored with its own final mapping; no
  active model passes, an active model of another label fails).

The checks read the source with the caller's rights, before anything is
written. A check that cannot be measured (no eval rows, one class only)
fails: an unattended refit must not activate what nobody could judge.

The same policy holds the retention every fit applies once it has stored its
model, to the models its role may manage: ``keep_models`` (the newest N) and
``keep_days`` (younger than D days); a model is kept when either keeps it, and
the active one, the one a rollback restores and pinned ones always stay.
"""
from __future__ import annotations

import json
import math

from . import errors, inference, quality
from .catalog import REGISTRY, RETENTION
from .errors import Refusal

CHECKS = ("min_train_sold", "min_oof_auc", "min_eval_auc", "max_auc_drop")


def parse(doc: str) -> dict:
    """A gate given as a JSON object of checks, each name and value checked."""
    gate = json.loads(doc)
    unknown = sorted(set(gate) - set(CHECKS) - set(RETENTION))
    if unknown:
        raise Refusal(errors.INVALID_PARAMETER_VALUE, f"unknown policy: {', '.join(unknown)}",
                      hint=f"The gate's checks: {', '.join(CHECKS)}; retention: {', '.join(RETENTION)}.")
    for name, value in gate.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise Refusal(errors.INVALID_PARAMETER_VALUE, f"policy {name} must be a finite number, got {value!r}")
        if name in RETENTION and (value < 0 or (name == "keep_models" and value != int(value))):
            raise Refusal(errors.INVALID_PARAMETER_VALUE,
                          f"policy {name} must be {'a whole number' if name == 'keep_models' else 'a number'} "
                          f">= 0, got {value!r}")
    return {name: float(value) for name, value in gate.items()}


def policy(plpy) -> dict:
    """The policy (ml.woe_anchor_policy): the gate's checks and the retention, read with the caller's rights."""
    return parse(json.dumps({r["name"]: r["value"] for r in plpy.execute("SELECT name, value FROM ml.woe_anchor_policy")}))


def verdict(plpy, gate: dict, measured: dict, n_train_sold: int, oof: bool, source_oid, cutoff: str,
            slow_threshold_hours: float) -> dict:
    """{"passed": bool, "checks": {name: {"limit", "value", "passed"}}} of a fit's figures."""
    checks = {}

    def check(name, value, passed, **more):
        checks[name] = {"limit": gate[name], "value": value, "passed": bool(passed), **more}

    if "min_train_sold" in gate:
        check("min_train_sold", n_train_sold, n_train_sold >= gate["min_train_sold"])
    if "min_oof_auc" in gate:
        auc = measured["oof_auc"] if oof else measured["insample_auc"]
        check("min_oof_auc", auc, auc is not None and auc >= gate["min_oof_auc"])
    if "min_eval_auc" in gate:
        auc = measured["eval_auc"]
        check("min_eval_auc", auc, auc is not None and auc >= gate["min_eval_auc"])
    if "max_auc_drop" in gate:
        value, passed, about = _drop(plpy, measured["eval_auc"], source_oid, cutoff, slow_threshold_hours,
                                     gate["max_auc_drop"])
        check("max_auc_drop", value, passed, **about)
    return {"passed": all(c["passed"] for c in checks.values()), "checks": checks}


def _drop(plpy, new_auc, source_oid, cutoff: str, slow_threshold_hours: float, limit: float):
    """(the active model's eval-window AUC less the new one's, passed, what was compared)."""
    active = plpy.execute(f"SELECT model_key FROM {REGISTRY} WHERE is_active")
    if not active:
        return None, True, {"active": None}
    model = inference.load_model(plpy, active[0]["model_key"])
    about = {"active": model.key}
    if model.slow_threshold_hours != slow_threshold_hours:
        return None, False, about | {"why": "the active model learned another label"}
    if new_auc is None:
        return None, False, about | {"why": "no eval rows"}
    try:
        y, (logit,), _ = inference.labelled_logits(plpy, [model], source_oid, cutoff, None)
    except Refusal as e:  # the active model cannot read this source
        return None, False, about | {"why": e.message}
    groups = quality.merged(logit, y.astype(float), (~y).astype(float))
    active_auc = quality.auc(*groups)
    if active_auc is None:
        return None, False, about | {"why": "the eval rows hold one class"}
    drop = active_auc - new_auc
    return drop, drop <= limit, about | {"active_auc": active_auc, "new_auc": new_auc}


def describe(result: dict) -> str:
    """One line: each check, its value and limit."""
    def one(name, c):
        value = "n/a" if c["value"] is None else f"{c['value']:.4g}"
        return f"{name} {value} ({'ok' if c['passed'] else 'fails'}, limit {c['limit']:g})"
    return "; ".join(one(name, c) for name, c in result["checks"].items())
