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

The checks are measured with the caller's rights, before anything is
written, and settled again by the persist entry point (``policy.py``). A
check that cannot be measured (no eval rows, one class only) fails: an
unattended refit must not activate what nobody could judge.

The same policy holds the retention every fit applies once it has stored its
model, to the models its role may manage: ``keep_models`` (the newest N) and
``keep_days`` (younger than D days); a model is kept when either keeps it, and
the active one, the one a rollback restores and pinned ones always stay.
"""
from __future__ import annotations

from . import inference, policy, quality
from .catalog import REGISTRY
from .errors import Refusal


def verdict(plpy, rules: dict, registry: dict, source_oid, cutoff: str) -> dict:
    """{"passed": bool, "checks": {name: {"limit", "value", "passed", ...}}} of a fit's figures
    (``registry``: what it will store), the drop against the active model measured here."""
    measured = None
    if "max_auc_drop" in rules:
        value, about = _drop(plpy, registry["eval_auc"], source_oid, cutoff, registry["slow_threshold_hours"])
        measured = {"checks": {"max_auc_drop": {"value": value, **about}}}
    return policy.settle(rules, registry, measured)


def _drop(plpy, new_auc, source_oid, cutoff: str, slow_threshold_hours: float):
    """(the active model's eval-window AUC less the new one's, what was compared); no active model:
    a drop of 0; None when it cannot be measured."""
    active = plpy.execute(f"SELECT model_key FROM {REGISTRY} WHERE is_active")
    if not active:
        return 0.0, {"active": None}
    model = inference.load_model(plpy, active[0]["model_key"])
    about = {"active": model.key}
    if model.slow_threshold_hours != slow_threshold_hours:
        return None, about | {"why": "the active model learned another label"}
    if new_auc is None:
        return None, about | {"why": "no eval rows"}
    try:
        y, (logit,), _ = inference.labelled_logits(plpy, [model], source_oid, cutoff, None)
    except Refusal as e:  # the active model cannot read this source
        return None, about | {"why": e.message}
    active_auc = quality.auc(*quality.grouped(logit, y))
    if active_auc is None:
        return None, about | {"why": "the eval rows hold one class"}
    return active_auc - new_auc, about | {"active_auc": active_auc, "new_auc": new_auc}


def describe(result: dict) -> str:
    """One line: each check, its value and limit."""
    def one(name, c):
        value = "n/a" if c["value"] is None else f"{c['value']:.4g}"
        return f"{name} {value} ({'ok' if c['passed'] else 'fails'}, limit {c['limit']:g})"
    return "; ".join(one(name, c) for name, c in result["checks"].items())
