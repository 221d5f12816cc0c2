"""CALL ml.fit_woe_anchor: orchestrates the set-based passes and persists artifacts.

Runs inside the caller's transaction: every write happens after all checks
and all learning, and any error rolls everything back, so a failed fit
leaves no row of its model key and the active model untouched.
"""
from __future__ import annotations

import datetime
import json
import math
import re
import time
import unicodedata

import numpy as np

from . import (bands, errors, gate, heap, inference, packs, passes, persist, policy, quality, readers, rowset, schemas,
               source, woe)
from .catalog import EVAL_WINDOW, REGISTRY
from .errors import Refusal
from .sqlgen import Compiler, quote_literal

# weights are summed as integers of 2^-61 of the newest row's weight; a fit whose rows
# average below this keeps fewer than ~37 bits per weight and would drift from float8
MIN_MEAN_WEIGHT = 2.0 ** -24
# a category band's learned values are looked up row by row in an array: keep it small
MAX_CATEGORY_VALUES = 10_000
# docs/contract.md 8 registry columns, filled when the schema learns thresholds of these names
DSOLD_COLUMNS = ("dsold_t1", "dsold_t2", "dsold_t3", "dsold_t4")


# pg_cron's schedules: five cron fields, an @-name, or a number of seconds (pg_cron checks the fields)
SCHEDULE_RE = re.compile(r"\s*(\S+\s+){4}\S+\s*|@(yearly|annually|monthly|weekly|daily|hourly|midnight|reboot)"
                         r"|[1-9][0-9]? seconds?")


def check_schedule(plpy, job_name, schedule, source_oid, p: dict, band_schema_version) -> None:
    """What a fit scheduled as ``job_name`` would refuse, refused now: the job could only fail."""
    for what, text in (("job_name", job_name), ("schedule", schedule)):
        if text is None:
            raise Refusal(errors.NULL_VALUE_NOT_ALLOWED, f"{what} must not be NULL")
    # pg_cron keeps a job's name as a name: 63 bytes, longer ones cut there (two names, one job)
    if (not 1 <= len(job_name.encode()) <= 63 or job_name != job_name.strip()
            or any(unicodedata.category(ch)[0] in "CZ" and ch != " " for ch in job_name)):
        raise Refusal(errors.INVALID_PARAMETER_VALUE, "job_name must be 1 to 63 bytes, without control, "
                      "format or line-separator characters or spaces around it")
    if not SCHEDULE_RE.fullmatch(schedule):
        raise Refusal(errors.INVALID_PARAMETER_VALUE, f"schedule {schedule[:80]!r} is not one pg_cron reads",
                      hint="Five cron fields ('15 3 * * *'), an @-name ('@daily') or '30 seconds'.")
    check_params(p)
    _, schema = schemas.load(plpy, band_schema_version)
    if source.resolve(plpy, source_oid, schema).temporary:
        raise Refusal(errors.INVALID_PARAMETER_VALUE, "a scheduled fit cannot read a temporary table",
                      hint="It runs in a session of its own, where this one's temporary tables do not exist.")


# past every timestamp PostgreSQL holds (a label moment t0 + threshold must stay one)
MAX_HOURS = 1e9


def check_params(p: dict) -> None:
    """Refuse bad parameters before touching the source."""
    def bad(msg, hint=None):
        raise Refusal(errors.INVALID_PARAMETER_VALUE, msg, hint=hint)

    if p["n_folds"] is None or p["n_folds"] < 1:
        bad(f"n_folds must be at least 1, got {errors.sql_text(p['n_folds'])}", "Use n_folds => 1 or oof => false to skip OOF.")
    if p["eps"] is None or not math.isfinite(p["eps"]) or p["eps"] <= 0:
        bad(f"eps must be a finite number > 0, got {errors.sql_text(p['eps'])}")
    hl = p["half_life_days"]
    if hl is not None and not math.isfinite(hl):
        bad(f"half_life_days must be finite, got {errors.sql_text(hl)}", "Pass NULL or a value <= 0 for no time decay.")
    for name in ("slow_threshold_hours", "min_duration_hours"):
        if p[name] is None or not math.isfinite(p[name]) or abs(p[name]) > MAX_HOURS:
            bad(f"{name} must be a number of hours from {-MAX_HOURS:g} to {MAX_HOURS:g}, got {errors.sql_text(p[name])}")
    t = p["dsold_thresholds"]
    if t is not None:
        if len(t) != 4 or any(x is None or not math.isfinite(x) for x in t):
            bad(f"dsold_thresholds must be 4 finite numbers, got {errors.sql_text(t)}")
        if any(t[i] >= t[i + 1] for i in range(3)):
            bad(f"dsold_thresholds must be strictly ascending, got {errors.sql_text(t)}")
    key = p["model_key"]
    if key is not None and (not 1 <= len(key) <= 128
                            or any(unicodedata.category(ch) == "Cc" for ch in key)):
        bad("model_key must be 1 to 128 characters without control characters")
    if key is not None and (not key.strip() or key != key.strip()):
        bad(f"model_key {key!r} is blank or starts or ends with spaces", "Pass the key without surrounding spaces.")
    for name in ("activate", "oof", "persist", "replace"):
        if p[name] is None:
            raise Refusal(errors.NULL_VALUE_NOT_ALLOWED, f"{name} must be true or false, not NULL")


def learn_thresholds(schema: bands.BandSchema, stats: dict, given) -> tuple[dict, str | None]:
    """docs/contract.md 5 for any schema: each learned rule's values from the stats pass.

    Returns ({name: value}, how the dsold_thresholds rule was set, or None
    when the schema has none). ``given`` is the dsold_thresholds parameter.
    """
    learned, dsold_source = {}, None
    for i, rule in enumerate(schema.learning):
        if isinstance(rule, bands.ScaleRule):
            if rule.parameter and given is not None:
                values, how = tuple(float(x) for x in given), "given"
            elif median_below(stats[f"n_{i}"], stats[f"below_{i}"], stats[f"under_{i}"], stats[f"over_{i}"],
                              rule.below):
                values, how = rule.small, "learned_small_scale"
            else:
                values, how = rule.large, "learned_large_scale"
            if rule.parameter:
                dsold_source = how
        else:
            n, q = stats[f"n_{i}"], stats[f"q_{i}"]
            if n >= rule.min_rows:
                values = q[:-1]
            else:
                values = [q[-1] if n >= 1 else rule.empty] * len(rule.names)
        # + 0.0: a threshold of -0.0 is 0.0, whichever reader ranked the values
        learned.update(zip(rule.names, (float(v) + 0.0 for v in values)))
    return learned, dsold_source


def median_below(n: int, n_below: int, under: float | None, over: float | None, bound: float) -> bool:
    """percentile_cont(0.5) of n values < bound, from counts and the values either side of it.

    Sorted, the values v give the median v[first] + (pos - first) * (v[second]
    - v[first]) at pos = (n - 1) / 2. Only when ``bound`` falls between the two
    middle values do their values matter, and then they are the largest value
    under the bound and the smallest one not under it. No values: no median.
    """
    if not n:
        return False
    pos, first, second = rowset.percentile_position(n, 0.5)
    if n_below > second:
        return True
    if n_below <= first:
        return False
    return under + (pos - first) * (over - under) < bound


def category_values(schema: bands.BandSchema, stats: dict) -> dict:
    """Each category band's distinct learned values, in code-point order (its codes)."""
    return {band.name: sorted(v for v in stats[f"values_{j}"] or () if v not in bands.RESERVED_LABELS)
            for j, band in enumerate(schema.bands) if band.category is not None}


class Phases:
    """Wall-clock milliseconds per phase, recorded in the registry."""

    def __init__(self):
        self.ms = {}
        self._t = time.monotonic()
        self._start = self._t

    def done(self, name):
        now = time.monotonic()
        self.ms[name] = round((now - self._t) * 1000.0, 3)
        self._t = now

    def total(self):
        return round((time.monotonic() - self._start) * 1000.0, 3)


def fit(plpy, version: str, code_sha256: str, **params) -> str:
    """Entry point of the procedure; returns the model key."""
    with passes.workers_beside_a_busy_leader(plpy), heap.kept_for_reuse():
        return errors.reported(plpy, _fit, plpy, version, code_sha256, params)


def _one(plpy, sql, types=(), args=()):
    plan = plpy.prepare(sql, list(types))
    rows = plpy.execute(plan, list(args))
    return rows[0] if rows else None


def _fit(plpy, version, code_sha256, p) -> str:
    phases = Phases()
    check_params(p)
    if p["half_life_days"] is not None and p["half_life_days"] <= 0:
        plpy.warning(f"half_life_days => {p['half_life_days']:g}: no time decay (every weight 1), as with NULL")
    if p["persist"] and _one(plpy, "SELECT current_setting('transaction_read_only') = 'on' AS ro")["ro"]:
        raise Refusal(errors.READ_ONLY_SQL_TRANSACTION, "a fit that persists cannot run in a read-only transaction",
                      hint="Fit on the primary, or pass persist => false to measure without storing.")
    schema_doc, schema = schemas.load(plpy, p["band_schema_version"])
    if p["persist"]:  # a model would freeze the schema: refused again, as the ticket's role, when persisted
        plpy.execute(plpy.prepare("SELECT woe_anchor_internal.require_fittable(current_user, $1)", ["int"]),
                     [p["band_schema_version"]])
    if p["dsold_thresholds"] is not None and not any(
            isinstance(r, bands.ScaleRule) and r.parameter for r in schema.learning):
        raise Refusal(errors.INVALID_PARAMETER_VALUE,
                       f"band schema {schema.version} has no thresholds that dsold_thresholds sets")
    src = source.resolve(plpy, p["source"], schema)
    if p["model_key"] is not None and p["persist"] and not p["replace"] and persist.key_exists(plpy, p["model_key"]):
        raise persist.exists(p["model_key"])
    reader = readers.open_rows(plpy, src)
    try:
        return _fit_source(plpy, p, phases, schema_doc, schema, src, reader)
    finally:
        reader.close()


def _refuse_unlearnable(stats: dict, p: dict, src, cutoff: str) -> None:
    """Refuse a source the fit cannot learn from, by the row counts of ``Statements.stats`` or ``RowSet.statistics``."""
    if stats["n_train_sold"] == 0:
        raise Refusal(errors.NO_DATA_FOUND,
                       f"TRAIN SOLD is empty: no row of {src.qualified} has sold_time <= {_cutoff_text(cutoff)}",
                       hint="Pass a later cutoff (TRAIN SOLD is sold_time <= cutoff) or check sold_time.")
    if stats["n_null_keys"]:
        raise Refusal(errors.NULL_VALUE_NOT_ALLOWED,
                       f"{stats['n_null_keys']} TRAIN SOLD rows have a NULL generation, listing_id or t0",
                       hint="Key columns must be NOT NULL; filter them out in a view.")
    if stats["n_infinite"]:
        raise Refusal(errors.DATETIME_FIELD_OVERFLOW,
                       f"{stats['n_infinite']} TRAIN SOLD rows have an infinite t0 or sold_time",
                       hint="Timestamps must be finite; filter or fix those rows in a view.")
    if stats["n_learned"] == 0:
        raise Refusal(errors.NO_DATA_FOUND,
                       f"no TRAIN SOLD row has duration_hours >= {p['min_duration_hours']}: nothing to learn",
                       hint="Lower min_duration_hours or check duration_hours.")


def _learn(schema, stats: dict, p: dict, src, cutoff: str):
    """The learned thresholds and how dsold's were set, once the source passes ``_refuse_unlearnable``."""
    _refuse_unlearnable(stats, p, src, cutoff)
    learned, dsold_source = learn_thresholds(schema, stats, p["dsold_thresholds"])
    odd = sorted(name for name, v in learned.items() if math.isnan(v))
    if odd:
        # quantiles of infinite inputs: SQL and numpy order NaN differently, and no band could use it
        raise Refusal(errors.INVALID_PARAMETER_VALUE,
                       f"learned thresholds {', '.join(odd)} are NaN: their inputs hold infinities",
                       hint="Filter or clamp infinite inputs in a view.")
    return learned, dsold_source


def _with_categories(schema, stats: dict):
    """The schema with each category band's learned values (``values_j`` of ``Statements.stats``)."""
    kept = category_values(schema, stats)
    for name, vals in kept.items():
        if len(vals) > MAX_CATEGORY_VALUES:
            raise Refusal(errors.INVALID_PARAMETER_VALUE,
                           f"category band {name!r} has {len(vals)} distinct values among the learned rows, "
                           f"more than {MAX_CATEGORY_VALUES}",
                           hint="Band the column coarser in a view, or use a ladder.")
    return schema.resolve(kept)


def _fit_source(plpy, p, phases, schema_doc, schema, src, reader: readers.Rows) -> str:
    """The fit once its parameters, schema and source are checked: check, read, learn the thresholds,
    fold, fit the WOE, persist. ``reader`` is where the rows come from (``readers``)."""
    cutoff = _cutoff_literal(plpy, src, p["cutoff"], reader)
    phases.done("cutoff")
    oof = bool(p["oof"]) and p["n_folds"] > 1
    plpy.notice(f"[woe] reading {src.qualified}: TRAIN SOLD is sold_time <= {_cutoff_text(cutoff)}")

    def statements(learned=None):
        return passes.Statements(Compiler(schema, src.reads, learned), src.qualified, cutoff,
                                 p["slow_threshold_hours"], p["min_duration_hours"])

    stats = reader.first_statistics(statements())
    if stats is not None:
        _refuse_unlearnable(stats, p, src, cutoff)  # before the category values are checked
    phases.done("stats")
    schema = _with_categories(schema, stats or {})
    plan = packs.plan(schema)
    stats = reader.all_statistics(statements(), plan, stats)
    phases.done("rows")
    plpy.notice(f"[woe] read TRAIN SOLD n={stats['n_train_sold']} (learned={stats['n_learned']}); "
                f"learning the thresholds and {p['n_folds'] if oof else 1} fold(s)")
    learned, dsold_source = _learn(schema, stats, p, src, cutoff)
    reader.prepare(schema, plan, learned, stats["ref_epoch"], p["half_life_days"])
    days = reader.train_days(stats)
    sql = statements(learned)

    n_days = len(days)
    if oof and n_days < 2:
        raise Refusal(errors.INVALID_PARAMETER_VALUE,
                       f"OOF needs at least 2 distinct t0 days in TRAIN SOLD, found {n_days}",
                       hint="Pass oof => false (or n_folds => 1) to score in-sample.")
    # a row's block: its fold with OOF on (numbered densely: with fewer days than folds some
    # fold ids have no rows), block 0 (the final fit) without
    fold_of_day = woe.fold_of_days(n_days, p["n_folds"]) if oof else np.zeros(n_days, dtype=np.int64)
    fold_ids, block_of_day = np.unique(fold_of_day, return_inverse=True)
    if oof and len(fold_ids) < p["n_folds"]:
        plpy.warning(f"n_folds => {p['n_folds']}, but TRAIN SOLD spans {n_days} days: {len(fold_ids)} folds have rows "
                     "(folds are blocks of whole days)")
    fold = sql.fold_of_row([_utc_midnight(days[i]) for i in range(1, n_days)
                            if block_of_day[i] != block_of_day[i - 1]])
    per_pack = reader.pack_sums(sql, plan, fold, days, block_of_day, stats["ref_epoch"], p["half_life_days"])
    sums = rowset.fold_sums(per_pack, schema, plan, len(fold_ids))
    phases.done("sums")
    if int(sums.n_rows.sum()) != stats["n_train_sold"]:
        errors.source_changed(src.qualified)

    band_subsets = {band.name: band.subset for band in schema.bands}
    floors = {band.name: band.category.min_weight for band in schema.bands if band.category}
    final, folds = woe.fit_all(sums, band_subsets, p["eps"], fold_ids.tolist() if oof else None, floors)
    _refuse_underflowed_weights([final, *folds.values()], p)
    phases.done("woe")
    plpy.notice(f"[woe] trained slow21 WOE anchor on TRAIN SOLD n={stats['n_train_sold']} "
                f"(learned={stats['n_learned']}, days={n_days}, base_rate={final.base_rate:.6f})")
    if final.base_rate in (0.0, 1.0):  # one label only: SPEC 6 makes every WOE 0
        plpy.warning(f"the learned TRAIN SOLD rows weigh on one label only, {'' if final.base_rate else 'not '}slow21 "
                     f"(duration_hours >= {p['slow_threshold_hours']:g}; weights decay from each row's label moment): "
                     "every WOE is 0, and the model gives every listing the same score")
    scoring = lookup_tables([folds[k] for k in fold_ids.tolist()] if oof else [final], plan, schema)
    if p["persist"]:
        plpy.notice(f"[woe] scoring and writing {stats['n_train_sold']} TRAIN SOLD rows")
        staging, shard_tables, n_scored = reader.write_scores(
            sql, plan, fold, scoring, fold_ids.tolist() if oof else None, phases, p["scores_on_shards"])
        if n_scored != stats["n_train_sold"]:
            errors.source_changed(src.qualified)
        if oof:
            plpy.notice(f"[woe] OOF scoring applied to TRAIN SOLD: folds={len(folds)} rows={n_scored}")
        else:
            plpy.notice(f"[woe] in-sample scoring applied to TRAIN SOLD (OOF off): rows={n_scored}")
    final_lookups = scoring if not oof else lookup_tables([final], plan, schema)
    measured = _quality(reader.quality_sets(sql, plan, fold, scoring if oof else None, final_lookups))
    if not measured["n_eval"]:
        plpy.warning("no row sold in the 7 days after the cutoff: the eval figures are empty (NULL)")
    phases.done("quality")
    plpy.notice(f"[woe] quality: {_quality_line(measured)}")
    # the gate judges every model that will serve: one the fit activates, or one that replaces the
    # active model of its key (it keeps serving)
    rules = policy.checks(policy.read(plpy))
    verdict = None
    if rules and (p["activate"] or _replaces_the_active_model(plpy, p)):
        figures = dict(measured, n_train_sold=stats["n_train_sold"], oof=oof,
                       slow_threshold_hours=p["slow_threshold_hours"])
        verdict = gate.verdict(plpy, rules, figures, p["source"], _cutoff_text(cutoff))
        plpy.notice(f"[woe] gate: {gate.describe(verdict)}")
        if not verdict["passed"]:
            plpy.warning("the gate refused this model: it is stored but not activated, and the active model stays"
                         if p["persist"] else "the gate would refuse this model")
    if not p["persist"]:
        # a fit finds a key twice when it builds the scores' key; a dry run builds none, so it looks
        if plpy.execute(f"SELECT EXISTS (SELECT FROM {src.qualified} AS s WHERE s.sold_time <= {cutoff} "
                        "GROUP BY s.generation, s.listing_id, s.t0 HAVING count(*) > 1) AS twice")[0]["twice"]:
            errors.duplicate_keys(src.qualified)
        return _report_unsaved(plpy, p, final, folds, measured, schema)

    registry = dict(
        train_cutoff_ts=_cutoff_text(cutoff), half_life_days=p["half_life_days"],
        eps=p["eps"], n_folds=p["n_folds"], band_schema_version=schema.version, band_schema=schema_doc,
        base_rate=final.base_rate, base_logit=final.base_logit,
        **{name: learned.get(name) for name in DSOLD_COLUMNS},
        slow_threshold_hours=p["slow_threshold_hours"], min_duration_hours=p["min_duration_hours"],
        oof=oof, weight_ref_ts=stats["ref_epoch"], dsold_source=dsold_source,
        n_train_sold=stats["n_train_sold"], n_learned=stats["n_learned"],
        n_learned_has_assets=_subset_learned(final, schema, "has_assets"), n_days=n_days,
        n_folds_with_rows=len(folds), n_scored_oof=n_scored if oof else 0,
        source_relation=src.qualified,
        parameters=json.dumps({k: v for k, v in p.items() if k != "source"}, default=str),
    )
    registry.update(measured, band_quality=json.dumps(quality.band_report(final, folds, band_subsets)))
    phases.done("registry")
    registry["timings_ms"] = json.dumps(dict(phases.ms, total=phases.total()))
    payload = dict(model_key=p["model_key"], replace=p["replace"], activate=p["activate"], gate=verdict,
                   registry=registry,
                   thresholds=persist.thresholds_json(learned), fits=_fits(final, folds),
                   maps=_maps([final] + list(folds.values()), schema), staging=staging, shard_tables=shard_tables)
    reader.finish()
    return _persist(plpy, payload, shard_tables, src)


def _replaces_the_active_model(plpy, p: dict) -> bool:
    return bool(p["persist"] and p["replace"] and p["model_key"] and _one(
        plpy, f"SELECT EXISTS (SELECT FROM {REGISTRY} WHERE model_key = $1 AND is_active) AS a",
        ["text"], [p["model_key"]])["a"])


def _report_unsaved(plpy, p: dict, final, folds: dict, measured: dict, schema) -> str:
    """persist => false: what the fit would have stored, as notices, so settings can be compared."""
    key = p["model_key"] or persist.default_key(plpy)
    plpy.notice(f"[woe] would store: folds={len(folds)}, {_quality_line(measured)}")
    for band in schema.bands:
        seen = [(label, float(final.woe[band.name][code])) for code, label in enumerate(band.labels)
                if final.n_rows[band.name][code]]
        plpy.notice(f"[woe] map {band.name}: " + ", ".join(f"{label} {woe:+.4f}" for label, woe in seen))
    plpy.notice(f"[woe] persist => false: nothing written (model_key={key})")
    return key


def _quality_line(measured: dict) -> str:
    def figure(name):
        value = measured.get(name)
        return "NULL" if value is None else f"{value:.4f}"
    return (f"OOF AUC {figure('oof_auc')}, in-sample AUC {figure('insample_auc')}, eval AUC {figure('eval_auc')} "
            f"(n_eval={measured['n_eval']}), OOF log loss {figure('oof_logloss')}, eval log loss "
            f"{figure('eval_logloss')}")


def _refuse_underflowed_weights(fits: list, p: dict) -> None:
    for f in fits:
        if f.n_learned and f.sum_w < f.n_learned * MIN_MEAN_WEIGHT:
            which = "the final fit" if f.fold_id is None else f"fold {f.fold_id}'s training rows"
            raise Refusal(errors.INVALID_PARAMETER_VALUE,
                           f"half_life_days => {p['half_life_days']} decays {which} to a mean weight of "
                           f"{f.sum_w / f.n_learned:.3g} of the newest row's, below the exact range (2^-24)",
                           hint="Use a longer half_life_days, fewer folds, or NULL for no decay.")


def _persist(plpy, payload: dict, shard_tables: list, src) -> str:
    """Write the model through the persist entry point; shard tables already committed are dropped
    again when that fails."""
    try:
        with plpy.subtransaction():
            written = json.loads(_one(plpy, "SELECT woe_anchor_internal.persist(woe_anchor_internal.ticket(), $1) AS w",
                                      ["text"], [json.dumps(payload)])["w"])
    except plpy.spiexceptions.UniqueViolation:
        _drop_shard_tables(plpy, shard_tables)
        errors.duplicate_keys(src.qualified)
    except Exception:
        _drop_shard_tables(plpy, shard_tables)  # committed on the shards, and no model records them
        raise
    key = written["model_key"]
    drop = plpy.prepare("SELECT woe_anchor_internal.drop_shard_table_of($1, $2, $3, $4)", ["text", "name", "name", "text"])
    for old in written["left_on_shards"]:
        plpy.execute(drop, [old["model_key"], old["fitted_by"], old["server"], old["remote_table"]])
    if written["pruned"]:
        plpy.notice(f"[db] retention policy: dropped {len(written['pruned'])} model(s): {', '.join(written['pruned'])}")
    if written["retention_deferred"]:
        # a warning: a reader that never ends its transaction would defer every prune
        plpy.warning("[db] retention policy: nothing pruned now (the scores table is busy: a transaction reading "
                     "stored scores, or another fit; or this snapshot missed an activation); the next fit prunes")
    plpy.notice(f"[db] persisted WOE anchor artifacts v1: model_key={key} (active={written['activated']})")
    plpy.notice(f"[woe] persisted WOE anchor artifacts to Postgres (model_key={key})")
    return key


def _drop_shard_tables(plpy, tables: list[dict]) -> None:
    """Drops the shard tables a fit wrote, when it failed after the shards committed them."""
    drop = plpy.prepare("SELECT woe_anchor_internal.drop_shard_table($1, $2)", ["text", "text"])
    for t in tables:
        plpy.execute(drop, [t["server"], t["remote_table"]])


def _fits(final: woe.Fit, folds: dict) -> dict:
    """Each fit's cuts row (final first) as parallel arrays."""
    fits = [final, *folds.values()]
    return {"fold_id": [f.fold_id for f in fits], "base_rate": [f.base_rate for f in fits],
            "base_logit": [f.base_logit for f in fits], "n_learned": [f.n_learned for f in fits]}


def _maps(fits: list, schema: bands.BandSchema) -> dict:
    """Every stored band value of every fit (the values a fit saw) as parallel arrays of map columns."""
    cols = {c: [] for c in ("fold_id", "band_name", "band_value", "woe", "sum_w_pos", "sum_w_neg", "n_rows")}
    for f in fits:
        for band in schema.bands:
            for code, label in enumerate(band.labels):
                n = int(f.n_rows[band.name][code])
                if n:
                    for c, v in zip(cols, (f.fold_id, band.name, label, float(f.woe[band.name][code]),
                                           float(f.sum_pos[band.name][code]), float(f.sum_neg[band.name][code]), n)):
                        cols[c].append(v)
    return cols


def _subset_learned(final: woe.Fit, schema: bands.BandSchema, subset: str) -> int | None:
    """Learned rows of the final fit inside ``subset`` (None when no band uses it)."""
    band = next((b for b in schema.bands if b.subset == subset), None)
    return None if band is None else int(final.n_rows[band.name].sum())


def _utc_midnight(day: int) -> str:
    """ISO text of the UTC midnight that starts epoch day ``day``."""
    return (datetime.datetime(1970, 1, 1) + datetime.timedelta(days=int(day))).strftime("%Y-%m-%dT00:00:00+00")


def _cutoff_literal(plpy, src, given, reader) -> str:
    """The cutoff as an exact, DateStyle-proof timestamptz literal (default: docs/contract.md 3)."""
    if given is None:
        text = reader.default_cutoff()
        if text is None:
            raise Refusal(errors.NO_DATA_FOUND, f"source {src.qualified} has no sold rows",
                           hint="TRAIN SOLD needs rows with sold_time set.")
        return f"{quote_literal(text)}::timestamptz"
    literal = inference.timestamp_literal(plpy, given, "cutoff")
    try:  # the eval window after it must be a time too
        with plpy.subtransaction():
            plpy.execute(f"SELECT {literal} + {EVAL_WINDOW}")
    except plpy.SPIError:
        raise Refusal(errors.INVALID_PARAMETER_VALUE, f"cutoff {given} leaves no room for the eval window "
                      f"({EVAL_WINDOW}) before the last timestamp PostgreSQL holds") from None
    return literal


def _cutoff_text(literal: str) -> str:
    """The ISO text inside a ``_cutoff_literal``."""
    return literal.split("'")[1]


def _quality(scored: dict) -> dict:
    """Registry columns of model quality from each scored set's runs of groups (``quality.summary``)."""
    m, bins = quality.summary(scored)
    return ({k: m[k] for k in ("oof_auc", "oof_logloss", "insample_auc", "insample_logloss",
                               "eval_auc", "eval_logloss")}
            | {"n_eval": m["eval_rows"], "score_bins": bins and json.dumps(bins)})


def lookup_tables(fits: list, plan: list, schema: bands.BandSchema) -> tuple[list, list]:
    """Base logit per fit and, per pack, the WOE sum per (fit, combination)."""
    tables = []
    for pack in plan:
        per_fit = [packs.woe_table(pack, [f.woe[b.name] for b in schema.bands]) for f in fits]
        tables.append(np.concatenate(per_fit).tolist())
    return [f.base_logit for f in fits], tables
