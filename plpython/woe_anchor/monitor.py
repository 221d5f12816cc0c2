"""Monitoring a stored model against the live population: drift of its bands (PSI), its realized
performance on listings whose outcome is now known, and the alerts a scheduled check raises.

Drift: training is what the model's final fit learned from (its map's row
counts per band value); the window is the source's rows with t0 in [start,
end), banded by the model's frozen mapping in one pass. Per band value: the
rows and shares on each side and its PSI term; per band: the PSI and its
usual reading.

Realized performance: the listings created since the model's cutoff whose
label is settled (sold, or unsold past the label's threshold), scored with the
final mapping, per UTC week of t0: AUC, log loss, mean predicted and observed
rate (calibration), with the fit's label rule.
"""
from __future__ import annotations

import contextlib
import json
import math
import re

import numpy as np

from . import bands, errors, packs, passes, policy, quality, rowset, source, woe
from .errors import Refusal
from .inference import load_model, timestamp_literal, window_literals
from .catalog import MAX_DAYS, REGISTRY
from .sqlgen import Compiler, float_lit

# shares below this count as this (the usual smoothing: a value one side never had adds a large,
# finite term)
SHARE_FLOOR = 1e-4
# the usual reading of a band's PSI: below 0.1 stable, up to 0.25 moderate, above it major
READINGS = ((0.1, "stable"), (0.25, "moderate"), (math.inf, "major"))
# the reading of a band with no rows in the window (or in training): no PSI, no alert
NO_ROWS = "no rows"


def reading(psi: float) -> str:
    return next(name for bound, name in READINGS if psi < bound or bound == math.inf)


def psi_terms(train: list[int], window: list[int]) -> list[float]:
    """Each value's (w - t) ln(w / t) of the two count vectors' shares, floored at SHARE_FLOOR."""
    n_train, n_window = sum(train), sum(window)
    terms = []
    for t, w in zip(train, window):
        ts = max(t / n_train if n_train else 0.0, SHARE_FLOOR)
        ws = max(w / n_window if n_window else 0.0, SHARE_FLOOR)
        terms.append((ws - ts) * math.log(ws / ts))
    return terms


def drift(plpy, source_oid, start, end, key: str | None) -> list[tuple]:
    """Rows (band_name, band_value, train_rows, window_rows, train_share, window_share, psi_term,
    band_psi, reading, unseen) per band value, bands in schema order."""
    if start is None or end is None:
        raise Refusal("22004", "window_start and window_end must not be NULL",
                      hint="The window is the source's rows with t0 in [window_start, window_end).")
    return _drift(plpy, load_model(plpy, key), source_oid, start, end)


def _drift(plpy, model, source_oid, start, end) -> list[tuple]:
    src = source.resolve(plpy, source_oid, model.schema, labels=False)
    start, end = window_literals(plpy, start, end)
    # one banding pass: rows per combination of each pack, decoded into rows per band value (a
    # pack's slot past its labels is NULL: no value)
    plan = packs.plan(model.schema)
    combos = passes.combinations_sql(Compiler(model.schema, src.reads, model.learned), plan)
    counts = [np.zeros(pack.size, dtype=np.int64) for pack in plan]
    grouped = ", ".join(f"GROUPING(r.c{j}) = 0" for j in range(len(plan)))
    # its leader counts every row's combinations
    with passes.workers_beside_a_busy_leader(plpy), passes.compiled_pass(plpy):
        grouped_rows = plpy.execute(f"""
SELECT array_position(ARRAY[{grouped}], true) - 1 AS pack,
       coalesce({', '.join(f'r.c{j}' for j in range(len(plan)))}) AS combination, count(*) AS n
FROM (SELECT {', '.join(f'{c} AS c{j}' for j, c in enumerate(combos))}
      FROM {src.qualified} AS s WHERE s.t0 >= {start} AND s.t0 < {end}) AS r
GROUP BY GROUPING SETS ({', '.join(f'(r.c{j})' for j in range(len(plan)))})""")
    for r in grouped_rows:
        counts[r["pack"]][r["combination"]] = int(r["n"])
    window = {}
    for pack, n in zip(plan, counts):
        for i, codes in zip(pack.bands, pack.codes(np.arange(pack.size))):
            labels = model.schema.bands[i].labels
            for code, rows in zip(codes.tolist(), n.tolist()):
                if rows and code < len(labels):
                    window[(i, labels[code])] = window.get((i, labels[code]), 0) + rows
    trained = model.trained  # read with the model, in its snapshot
    out = []
    for i, band in enumerate(model.schema.bands):
        labels = [label for label in bands.display_order(band)
                  if trained.get((band.name, label), 0) or window.get((i, label), 0)]
        train = [trained.get((band.name, label), 0) for label in labels]
        live = [window.get((i, label), 0) for label in labels]
        n_train, n_window = sum(train), sum(live)
        # with no rows on a side there are no shares to compare: no PSI (the floor alone would read as
        # a major shift of every band)
        compared = bool(n_train and n_window)
        terms = psi_terms(train, live) if compared else [None] * len(labels)
        band_psi = woe.total(terms) if compared else None
        for label, t, w, term in zip(labels, train, live, terms):
            out.append((band.name, label, t, w, t / n_train if n_train else None, w / n_window if n_window else None,
                        term, band_psi, reading(band_psi) if band_psi is not None else NO_ROWS, t == 0))
    return out


def realized(plpy, source_oid, key: str | None, since) -> list[tuple]:
    """Rows (week, rows, slow21_rows, auc, logloss, mean_p, observed_rate) per UTC week of t0, of
    the source's settled listings created since ``since`` (default: the model's cutoff)."""
    return _realized(plpy, load_model(plpy, key), source_oid, since)


def _realized(plpy, model, source_oid, since) -> list[tuple]:
    src = source.resolve(plpy, source_oid, model.schema)
    start = timestamp_literal(plpy, since if since is not None else model.cutoff, "since")
    threshold = float_lit(model.slow_threshold_hours)
    settled = (f"s.t0 >= {start} AND (s.sold_time IS NOT NULL "
               f"OR coalesce({src.reads['duration_hours']} >= {threshold}, false) "
               "OR coalesce(s.final_status = 'older21days', false))")
    plan = packs.plan(model.schema)
    # a row travels as its label and each pack's combination in int8 words: the logits are computed
    # here, once per distinct combination, as the fit computes its in-sample ones
    words = packs.words([2, *(p.size for p in plan)])
    codes = [f"({passes.label_sql(src.reads, model.slow_threshold_hours)})::int",
             *passes.combinations_sql(Compiler(model.schema, src.reads, model.learned), plan)]
    parts = packs.words_sql(words, [f"r.c{i}" for i in range(len(codes))])
    # workers band the rows and make their words below the OFFSET 0 fence, while the leader adds
    # every row to its week; plpy.execute, as a cursor's plan is never parallel
    with passes.workers_beside_a_busy_leader(plpy), passes.compiled_pass(plpy):
        weeks = plpy.execute(f"""
SELECT ((q.week AT TIME ZONE 'UTC')::date)::text AS week, count(*) AS n, {', '.join(f'string_agg(int8send(q.w{j}), NULL) AS w{j}' for j in range(len(words)))}
FROM (SELECT r.week, {', '.join(f'{w} AS w{j}' for j, w in enumerate(parts))}
      FROM (SELECT {WEEK_SQL} AS week,
                   {', '.join(f'{c} AS c{i}' for i, c in enumerate(codes))}
            FROM {src.qualified} AS s WHERE {settled}) AS r
      OFFSET 0) AS q
GROUP BY q.week ORDER BY q.week""")
    lookups = ([model.base_logit], [packs.woe_table(p, model.woe).tolist() for p in plan])
    out, batch, rows = [], [], 0
    for r in weeks:
        batch.append(r)
        rows += int(r["n"])
        if rows >= REALIZED_BATCH:
            out += _realized_weeks(batch, words, plan, lookups)
            batch, rows = [], 0
    return out + _realized_weeks(batch, words, plan, lookups)


# the start of t0's UTC week (a Monday) as a timestamptz: date_bin's integer steps from a Monday,
# a tenth cheaper per row than date_trunc with AT TIME ZONE; only from its origin on, where every
# release agrees on date_bin, and date_trunc elsewhere (earlier and infinite t0)
WEEK_ORIGIN = "'2000-01-03 00:00:00+00'::timestamptz"
WEEK_SQL = (f"CASE WHEN s.t0 >= {WEEK_ORIGIN} AND isfinite(s.t0) THEN date_bin('7 days', s.t0, {WEEK_ORIGIN}) "
            f"ELSE date_trunc('week', s.t0 AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' END")

# settled rows whose figures are computed at once (about 100 bytes each at the peak, besides the
# statement's result: 8 bytes a row per word); the later weeks wait
REALIZED_BATCH = 1 << 21


def _realized_weeks(weeks: list[dict], words: list, plan: list, lookups: tuple) -> list[tuple]:
    """The figures of whole weeks of rows from ``realized``'s statement: every row numbered by its
    combination (linear time), each distinct combination's logit computed, and the C library's exp,
    log and log1p taken once per distinct logit of the weeks."""
    if not weeks:
        return []
    y, *combos = packs.decoded_words(words, [np.concatenate([rowset.int8_values(w[f"w{j}"]) for w in weeks])
                                             for j in range(len(words))])
    if len(y) != sum(int(w["n"]) for w in weeks) or any(len(c) != len(y) for c in combos):
        raise ValueError("the settled rows sent do not add up to the rows counted")
    # rows numbered by their combinations (marks, no sort); each number's combination gives its logit
    group, n_groups, combos = rowset.dense_groups([(c, p.size) for c, p in zip(combos, plan)], len(y))
    # a sum of finite WOE past float8 is an error, as in the scoring SQL (float8 +); inf + -inf is NaN
    with np.errstate(over="raise", invalid="ignore"):
        try:
            logit = rowset.logits(combos, plan, lookups, np.zeros(n_groups, np.int64))
        except FloatingPointError:
            raise Refusal("22003", "value out of range: overflow",
                          detail="A logit of the model's final mapping is past the largest float8.") from None
    logit, rank = np.unique(logit, return_inverse=True)
    # a row's distinct logit (ascending) and label as one integer, int32 when it fits: cheaper to sort
    row = rank.astype(np.int32 if len(logit) < 1 << 30 else np.int64)[group]
    del combos, group, rank
    row <<= 1
    row |= y.astype(row.dtype)
    taken = np.zeros(2 * len(logit), dtype=bool)
    taken[row] = True  # the labels that rows with each distinct logit have: (negative, positive) pairs
    p = quality.probability(logit)
    logs = quality.log_terms(p, taken[1::2], taken[0::2])
    out, lo = [], 0
    for w in weeks:
        hi = lo + int(w["n"])
        # the week's rows by distinct logit, ascending: one sort; a run's positives are its odd values
        week = np.sort(row[lo:hi])
        at = week >> 1
        first = np.flatnonzero(np.r_[True, at[1:] != at[:-1]])
        seen, positives = at[first], np.add.reduceat(week & 1, first)
        n_pos = positives.astype(np.float64)
        n_neg = (np.diff(np.r_[first, len(week)]) - positives).astype(np.float64)
        n, p_seen = hi - lo, p[seen]
        figures = quality.SetFigures()   # quality.auc's and quality.logloss's figures, in one pass
        figures.add(logit[seen], n_pos, n_neg, p_seen, (logs[0][seen], logs[1][seen]))
        predicted = quality.ExactSum()  # math.fsum's bits, without a Python float per group
        predicted.add((n_pos + n_neg) * p_seen)
        out.append((w["week"], n, figures.n_pos, figures.auc(), figures.logloss(), predicted.value() / n,
                    figures.n_pos / n))
        lo = hi
    return out


@contextlib.contextmanager
def _as_its_fitter(plpy, model, source_oid):
    """Read the source as the model's fitter. A monitor run measures it through the model's bands,
    which that role chose, and its records, alerts, their ids and its NOTIFY reach that role (by
    statistics and counts where row security hides the rows): read with the fitter's rights, it
    measures no row the fitter may not read, whoever runs it (docs/security.md). A superuser's
    model, or the caller's own, is read as the caller."""
    # who may act as the fitter is the current role's question, not the session user's (whom
    # PostgreSQL asks for SET ROLE): a member of the fitter, or a superuser
    row = plpy.execute(plpy.prepare(
        f"SELECT r.fitted_by, r.fitted_by = current_user OR coalesce(g.rolsuper, false) AS as_caller, "
        f"g.oid IS NOT NULL AND (pg_catalog.pg_has_role(current_user, g.oid, 'MEMBER') OR "
        f"(SELECT s.rolsuper FROM pg_catalog.pg_roles AS s WHERE s.rolname = current_user)) AS may_act, "
        # the role to set back, by its oid (a rename meanwhile must not lose it); NULL: none was set
        f"CASE WHEN current_setting('role') <> 'none' THEN current_user::regrole::oid END AS role, "
        f"$2::regclass::text AS source "
        f"FROM {REGISTRY} AS r LEFT JOIN pg_catalog.pg_roles AS g ON g.rolname = r.fitted_by WHERE r.model_id = $1",
        ["int8", "oid"]), [model.model_id, source_oid])
    if not row or row[0]["as_caller"]:  # no row: replaced meanwhile, which recording refuses
        yield
        return
    fitter, role, source_name = row[0]["fitted_by"], row[0]["role"], row[0]["source"]
    if not (row[0]["may_act"] and _set_role(plpy, fitter)):
        raise Refusal(errors.INSUFFICIENT_PRIVILEGE, f"model {model.key!r} was fitted by {fitter}: a monitor run "
                      "reads its source as the model's fitter, and this role may not act as that one (or it runs "
                      "in a SECURITY DEFINER function, where PostgreSQL allows no SET ROLE)",
                      hint="Run the monitor as a superuser, as the fitter, or as a member of it.")
    try:
        yield
    except plpy.spiexceptions.InsufficientPrivilege:
        raise Refusal(errors.INSUFFICIENT_PRIVILEGE, f"model {model.key!r} was fitted by {fitter}, who may not read "
                      f"{source_name}: a monitor run reads its source as the model's fitter",
                      hint="Grant that role SELECT on the source, or monitor a model fitted by a role that "
                           "may read it.") from None
    finally:
        back = plpy.execute(plpy.prepare(
            "SELECT CASE WHEN $1::oid IS NULL THEN 'none' "
            "ELSE (SELECT g.rolname::text FROM pg_catalog.pg_roles AS g WHERE g.oid = $1) END AS back", ["oid"]),
            [role])[0]["back"]
        if back is None or not _set_role(plpy, back):  # never record, or go on, as the fitter
            raise Refusal(errors.OBJECT_NOT_IN_PREREQUISITE_STATE, "the caller's role could not be set back after "
                          "the measuring: nothing is recorded", hint="Run the monitor again.")


def _set_role(plpy, role: str) -> bool:
    """The role for the rest of this transaction, or False where it may not be set. Transaction-local
    both ways: at the end of the transaction the role is what it would have been without the
    monitor (a caller's SET LOCAL ROLE ends with it, a plain SET stays)."""
    try:
        with plpy.subtransaction():
            plpy.execute(plpy.prepare("SELECT pg_catalog.set_config('role', $1, true)", ["text"]), [role])
        return True
    except plpy.SPIError:
        return False


CHANNEL_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def monitor(plpy, source_oid, key: str | None, window_days: float, psi_limit: float, auc_drop: float,
            min_rows: int, channel: str | None) -> list[tuple]:
    """Drift of the last ``window_days`` and realized performance since the cutoff, recorded
    (ml.woe_anchor_realized, through the record entry point), with an alert for each band whose
    PSI exceeds ``psi_limit`` and each week of at least ``min_rows`` settled rows whose AUC is
    more than ``auc_drop`` below the model's out-of-fold AUC. Alerts are recorded
    (ml.woe_anchor_alerts) and sent to ``channel`` with NOTIFY at commit. Returns the alerts:
    (kind, subject, value, threshold)."""
    if channel is not None and not CHANNEL_RE.fullmatch(channel):
        raise Refusal(errors.INVALID_PARAMETER_VALUE, f"channel {channel!r} must be a lower-case identifier")
    for name, value, most in (("window_days", window_days, MAX_DAYS), ("psi_limit", psi_limit, math.inf),
                              ("auc_drop", auc_drop, math.inf)):
        if value is None or not math.isfinite(value) or not 0 < value <= most:
            raise Refusal(errors.INVALID_PARAMETER_VALUE, f"{name} must be a finite number > 0"
                          + (f" and at most {most:g}" if math.isfinite(most) else "")
                          + f", got {errors.sql_text(value)}")
    if min_rows is None or min_rows < 0:
        raise Refusal(errors.INVALID_PARAMETER_VALUE,
                      f"min_rows must be a whole number >= 0, got {errors.sql_text(min_rows)}")
    model = load_model(plpy, key)
    now = plpy.execute("SELECT now()::text AS now, (now() - make_interval(secs => %s))::text AS start"
                       % float_lit(window_days * 86400.0))[0]
    # one model throughout: read once, and recorded only while it is still its key's model
    with _as_its_fitter(plpy, model, source_oid):
        bands_now = _drift(plpy, model, source_oid, now["start"], now["now"])
        weeks = _realized(plpy, model, source_oid, None)
    psi = {r[0]: r[7] for r in bands_now if r[7] is not None}
    alerts = [("drift", band, value, psi_limit) for band, value in psi.items() if value > psi_limit]
    if not any(r[3] for r in bands_now):  # not one listing in the window: no drift to measure, a feed to check
        alerts.append(("no_rows", f"t0 in the last {window_days:g} days", 0.0, None))
    oof_auc = policy.figure("min_oof_auc", model.figures)
    for week, n, _, auc, *_ in weeks:
        if n >= min_rows and auc is not None and oof_auc is not None and auc < oof_auc - auc_drop:
            alerts.append(("realized_auc", week, auc, oof_auc - auc_drop))
    payload = {"model_key": model.key, "model_id": model.model_id, "channel": channel, "window_days": window_days, "psi": psi,
               "weeks": [dict(zip(("week", "rows", "slow21_rows", "auc", "logloss", "mean_p", "observed_rate"), w))
                         for w in weeks],
               "alerts": [dict(zip(("kind", "subject", "value", "threshold"), a)) for a in alerts]}
    plpy.execute(plpy.prepare("SELECT woe_anchor_internal.record_monitoring(woe_anchor_internal.ticket(), $1::jsonb)",
                              ["text"]), [json.dumps(payload)])
    return alerts
