"""One self-contained HTML page about a stored model, from what the database holds.

Nothing is re-scored: the registry row (quality, score bins), the schema's
band values (``ml.woe_anchor_model_bands``) and the final and per-fold map
rows give the model; its notes, its activations, and what ml.woe_anchor_monitor
recorded (PSI per band per run, realized performance per week, alerts) give
its life since.
"""
from __future__ import annotations

from datetime import datetime, timezone

from . import plots
from .plots import esc, fmt

REGISTRY_SQL = "SELECT * FROM ml.woe_anchor_model_registry_v1 WHERE model_key = %s"
THRESHOLDS_SQL = "SELECT thresholds FROM ml.woe_anchor_cuts_v1 WHERE model_key = %s AND fold_id IS NULL"
BANDS_SQL = """
SELECT b.band_position, b.band_name, b.subset, b.band_value, m.woe, m.n_rows, m.sum_w_pos, m.sum_w_neg,
       coalesce(f.folds, '{}') AS folds
FROM ml.woe_anchor_model_bands(%(key)s) AS b
LEFT JOIN ml.woe_anchor_map_v1 AS m
       ON m.model_key = %(key)s AND m.fold_id IS NULL AND m.band_name = b.band_name AND m.band_value = b.band_value
LEFT JOIN LATERAL (SELECT array_agg(x.woe ORDER BY x.fold_id) AS folds FROM ml.woe_anchor_map_v1 AS x
                   WHERE x.model_key = %(key)s AND x.fold_id IS NOT NULL
                     AND x.band_name = b.band_name AND x.band_value = b.band_value) AS f ON true
ORDER BY b.band_position, b.value_position
"""
MONITORING_SQL = {
    "notes": "SELECT description, array_to_string(tags, ', '), pinned FROM ml.woe_anchor_model_notes "
             "WHERE model_key = %(key)s",
    "activations": "SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), by_role, action, from_model, to_model "
                   "FROM ml.woe_anchor_activations WHERE %(key)s IN (from_model, to_model) ORDER BY id",
    # monitoring records are their recorders' claims (any trainer may monitor any model): each
    # shows who made it
    "psi": "SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), band_name, psi, recorded_by "
           "FROM ml.woe_anchor_psi WHERE model_key = %(key)s ORDER BY at, band_name",
    "realized": "SELECT week::text, n_rows, n_slow21, auc, logloss, mean_p, observed_rate, recorded_by "
                "FROM ml.woe_anchor_realized WHERE model_key = %(key)s ORDER BY week",
    # the alerts of this model, not of an earlier one of the same key
    "alerts": "SELECT to_char(a.at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), a.kind, a.subject, a.value, a.threshold, "
              "a.by_role FROM ml.woe_anchor_alerts AS a JOIN ml.woe_anchor_model_registry_v1 AS r "
              "ON r.model_key = a.model_key AND r.model_id = a.model_id WHERE a.model_key = %(key)s ORDER BY a.id",
}
PSI_RUNS = 12  # the latest monitor runs the PSI table shows
SETS = (("oof", "OOF (train)"), ("insample", "in-sample (train)"), ("eval", "eval, 7 days after cutoff"))

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1100px;
       color: #111; background: #fff; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; }
h3 { font-size: 15px; margin: 18px 0 4px; } .muted { color: #555; }
table { border-collapse: collapse; font-size: 13px; } td, th { padding: 3px 10px; text-align: left; }
th { background: #f3f4f6; } tr:nth-child(even) td { background: #fafafa; } td.num { text-align: right; }
.row { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
"""


class ReportError(Exception):
    pass


def fetch(conn, key: str) -> dict:
    """The model's registry row and its bands with final WOE, learned rows and per-fold WOE."""
    cur = conn.execute(REGISTRY_SQL, [key])
    row = cur.fetchone()
    if row is None:
        raise ReportError(f"no model {key!r}")
    registry = dict(zip([d.name for d in cur.description], row))
    found = conn.execute(THRESHOLDS_SQL, [key]).fetchone()
    limits = cut_points(registry["band_schema"], found[0] if found else {})
    bands: dict[str, dict] = {}
    for position, name, subset, value, woe, n_rows, pos, neg, folds in conn.execute(BANDS_SQL, {"key": key}):
        band = bands.setdefault(name, {"name": name, "subset": subset, "values": []})
        band["values"].append({"value": value, "woe": woe, "n_rows": n_rows, "pos": pos, "neg": neg,
                               "folds": list(folds), "rule": limits.get((name, value), "")})
    monitoring = {name: conn.execute(sql, {"key": key}).fetchall() for name, sql in MONITORING_SQL.items()}
    return {"registry": registry, "bands": list(bands.values()), **monitoring}


def cut_points(band_schema: dict, thresholds: dict) -> dict:
    """(band, label) -> the test that gives the label, with learned thresholds' values, e.g.
    ('dsold', 'dSold_cheap') -> '≤ -0.15 (dsold_t1)'; a ladder's NULL and default labels too."""
    out = {}
    for band in (band_schema or {}).get("bands", []):
        rule, name = band["rule"], band["band_name"]
        if rule.get("kind") != "ladder":
            continue
        shown = {"<": "<", "<=": "≤", "=": "=", ">=": "≥", ">": ">"}
        for step in rule["steps"]:
            value = step["value"]
            if isinstance(value, dict) and "learned" in value:
                learned = thresholds.get(value["learned"])
                value = f"{fmt(learned, 4)} ({value['learned']})" if learned is not None else value["learned"]
            elif isinstance(value, (int, float)):
                value = fmt(value, 4)
            else:
                value = "an input"
            out.setdefault((name, step["label"]), f"{shown.get(step['op'], step['op'])} {value}")
        out.setdefault((name, rule["else"]), "otherwise")
        if rule.get("null"):
            out[(name, rule["null"])] = "NULL"
    return out


def calibration_points(bins: dict, name: str) -> list[tuple[float, float, int]]:
    """(mean predicted p, observed rate, rows) of every non-empty score bin of one set."""
    s = bins[name]
    return [(p / (a + b), a / (a + b), a + b) for a, b, p in zip(s["n_pos"], s["n_neg"], s["sum_p"]) if a + b]


def render(data: dict, generated_at: datetime | None = None) -> str:
    r = data["registry"]
    generated_at = generated_at or datetime.now(timezone.utc)
    parts = [f"<h1>WOE anchor model {esc(r['model_key'])}</h1>",
             f"<p class='muted'>{'active' if r['is_active'] else 'not active'} · fitted "
             f"{esc(r['created_at'])} from {esc(r['source_relation'])} · report written "
             f"{esc(generated_at.strftime('%Y-%m-%d %H:%M UTC'))}</p>",
             _summary(r, data.get("notes")), "<h2>Quality</h2>", _quality(r), _score_sections(r),
             "<h2>Monitoring</h2>", _monitoring(data), "<h2>Bands</h2>", _band_table(r, data["bands"])]
    # one WOE scale for every band: a ±0.1 band looks weaker than a ±0.6 one
    reach = max([abs(w) for band in data["bands"] for v in band["values"]
                 for w in [v["woe"], *v["folds"]] if w is not None] + [0.1])
    for band in data["bands"]:
        where = f" (on subset {esc(band['subset'])})" if band["subset"] else ""
        parts.append(f"<h3>{esc(band['name'])}{where}</h3>")
        parts.append("<div class='row'>" + plots.band_woe(band["name"], band["values"],
                                                          f"WOE per value of band {band['name']}", reach)
                     + _value_table(band) + "</div>")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>woe_anchor report: {esc(r['model_key'])}</title><style>{CSS}</style></head>"
            f"<body>{''.join(parts)}</body></html>")


def _rows(header: list[str], rows, formats) -> str:
    """A table of ``rows``; ``formats`` turns each cell into text (None: as it is)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(
        f"<td class='num'>{esc(f(v))}</td>" if f else f"<td>{esc('' if v is None else v)}</td>"
        for v, f in zip(row, formats)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _monitoring(data: dict) -> str:
    """PSI per band over the latest monitor runs, realized performance per week, alerts, activations."""
    number = lambda digits: (lambda v: "" if v is None else fmt(v, digits))  # noqa: E731
    parts = []
    # a run is its time and the role that recorded it
    runs = sorted({(at, by) for at, _, _, by in data.get("psi", [])})[-PSI_RUNS:]
    if runs:
        psi = {(at, by, band): value for at, band, value, by in data["psi"]}
        bands = sorted({band for _, band, _, _ in data["psi"]})
        parts.append("<h3>PSI per band (stable below 0.1, moderate to 0.25, major above), per run and its recorder</h3>"
                     + _rows(["band", *(f"{at} by {by}" for at, by in runs)],
                             [[band, *(psi.get((at, by, band)) for at, by in runs)] for band in bands],
                             [None, *[number(4)] * len(runs)]))
    if data.get("realized"):
        parts.append("<h3>Realized performance per week of settled listings</h3>"
                     + _rows(["week", "rows", "slow21", "AUC", "log loss", "mean predicted", "observed rate",
                              "recorded by"], data["realized"],
                             [None, str, str, number(4), number(4), number(4), number(4), None]))
    if data.get("alerts"):
        parts.append("<h3>Alerts</h3>" + _rows(["at (UTC)", "kind", "subject", "value", "threshold", "by"],
                                               data["alerts"], [None, None, None, number(4), number(4), None]))
    if data.get("activations"):
        parts.append("<h3>Activations</h3>" + _rows(["at (UTC)", "by", "action", "from", "to"], data["activations"],
                                                    [None] * 5))
    return "".join(parts) or ("<p class='muted'>Nothing recorded yet: ml.woe_anchor_monitor records drift and "
                              "realized performance; activations are logged as they happen.</p>")


def _summary(r: dict, notes=None) -> str:
    items = [*_note_items(notes), ("train cutoff", r["train_cutoff_ts"]), ("TRAIN SOLD rows", f"{r['n_train_sold']:,}"),
             ("learned rows", f"{r['n_learned']:,}"), ("days / folds with rows", f"{r['n_days']} / {r['n_folds_with_rows']}"),
             ("out-of-fold", "yes" if r["oof"] else "no (in-sample scores)"),
             ("base rate / base logit", f"{fmt(r['base_rate'], 4)} / {fmt(r['base_logit'], 4)}"),
             ("band schema", r["band_schema_version"]), ("half-life (days)", r["half_life_days"]),
             ("eps", r["eps"]), ("slow21 threshold (hours)", r["slow_threshold_hours"]),
             ("learned from duration (hours)", f"≥ {r['min_duration_hours']}"),
             ("fit time", f"{r['timings_ms'].get('total', 0) / 1000:.2f} s" if r.get("timings_ms") else "n/a"),
             ("extension / code", f"{r['extension_version']} / {str(r['code_sha256'])[:12]}")]
    cells = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in items)
    return f"<table>{cells}</table>"


def _note_items(notes) -> list[tuple[str, str]]:
    if not notes:
        return []
    description, tags, pinned = notes[0]
    return [("description", description or ""), ("tags", tags or ""), ("pinned", "yes" if pinned else "no")]


def _quality(r: dict) -> str:
    aucs = [("OOF", r["oof_auc"]), ("in-sample", r["insample_auc"]), ("eval", r["eval_auc"])]
    chart = plots.metric_bars(aucs, "AUC: OOF vs in-sample on TRAIN SOLD, and on the eval window")
    head = "<tr><th>set</th><th>AUC</th><th>log loss</th><th>rows</th></tr>"
    rows = [("OOF", r["oof_auc"], r["oof_logloss"], r["n_scored_oof"]),
            ("in-sample", r["insample_auc"], r["insample_logloss"], r["n_train_sold"]),
            ("eval", r["eval_auc"], r["eval_logloss"], r["n_eval"])]
    cells = "".join(f"<tr><td>{name}</td><td class='num'>{fmt(auc, 4)}</td><td class='num'>{fmt(ll, 4)}</td>"
                    f"<td class='num'>{'n/a' if n is None else f'{n:,}'}</td></tr>" for name, auc, ll, n in rows)
    gap = ("" if r["oof_auc"] is None or r["insample_auc"] is None else
           f"<p>In-sample AUC exceeds OOF AUC by {r['insample_auc'] - r['oof_auc']:.4f}: the optimism "
           "that scoring rows with a mapping learned from their own labels would add.</p>")
    return f"<div class='row'>{chart}<div><table>{head}{cells}</table>{gap}</div></div>"


def _score_sections(r: dict) -> str:
    bins = r.get("score_bins")
    if not bins:
        return "<p class='muted'>This model records no score bins (imported from the Python trainer).</p>"
    has_rows = {name: any(bins[name]["n_pos"]) or any(bins[name]["n_neg"]) for name, _ in SETS}
    # the training rows' own scores: OOF, or in-sample for a model fitted with OOF off
    scored = "oof" if has_rows["oof"] else "insample"
    labels = dict(SETS)
    curves = [(labels[name], color, calibration_points(bins, name))
              for name, color in ((scored, plots.POSITIVE), ("eval", plots.NEGATIVE)) if has_rows[name]]
    hist = plots.histogram(bins["edges"], [("slow21", plots.POSITIVE, bins[scored]["n_pos"]),
                                           ("not slow21", plots.NEGATIVE, bins[scored]["n_neg"])],
                           f"Distribution of the {scored} scores", f"{scored} logit (40 equal-width bins)")
    return ("<h2>Calibration and score distribution</h2><div class='row'>"
            f"{plots.calibration(curves, 'Calibration of the predicted p(slow21)')}{hist}</div>")


def _band_table(r: dict, bands: list[dict]) -> str:
    quality = r.get("band_quality") or {}
    head = ("<tr><th>band</th><th>subset</th><th>values</th><th>information value</th>"
            "<th>fold WOE std (row-weighted)</th><th>max |fold − final| WOE</th></tr>")
    cells = []
    for band in bands:
        q = quality.get(band["name"], {})
        cells.append(f"<tr><td>{esc(band['name'])}</td><td>{esc(band['subset'] or '')}</td>"
                     f"<td class='num'>{len(band['values'])}</td><td class='num'>{fmt(q.get('iv'), 4)}</td>"
                     f"<td class='num'>{fmt(q.get('woe_fold_std'), 4)}</td>"
                     f"<td class='num'>{fmt(q.get('woe_fold_max_abs_dev'), 4)}</td></tr>")
    spread = [(band["name"], quality.get(band["name"], {}).get("woe_fold_std")) for band in bands]
    known = [v for _, v in spread if v is not None]
    chart = (plots.metric_bars(spread, "Per-fold stability: row-weighted std of a band's WOE across folds",
                               0.0, max(known + [0.01]) * 1.15, colors=(plots.FOLD_DOT,))
             if known else "<p class='muted'>No per-fold fits: the model was fitted with OOF off.</p>")
    return f"<div class='row'><table>{head}{''.join(cells)}</table>{chart}</div>"


def _value_table(band: dict) -> str:
    """Per value: its rule, learned rows, weighted slow21 rate, WOE and share of the band's IV."""
    seen = [v for v in band["values"] if v["pos"] is not None and v["neg"] is not None]
    total_pos, total_neg = sum(v["pos"] for v in seen), sum(v["neg"] for v in seen)
    head = "<tr><th>value</th><th>rule</th><th>rows</th><th>slow21 rate</th><th>WOE</th><th>IV</th></tr>"
    cells = []
    for v in band["values"]:
        rate = iv = None
        if v["pos"] is not None and v["neg"] is not None and v["pos"] + v["neg"] > 0:
            rate = v["pos"] / (v["pos"] + v["neg"])
            if total_pos > 0 and total_neg > 0 and v["woe"] is not None:
                iv = (v["pos"] / total_pos - v["neg"] / total_neg) * v["woe"]
        rows = "n/a" if v["n_rows"] is None else f"{v['n_rows']:,}"
        cells.append(f"<tr><td>{esc(v['value'])}</td><td>{esc(v['rule'])}</td><td class='num'>{rows}</td>"
                     f"<td class='num'>{fmt(rate, 4)}</td><td class='num'>{fmt(v['woe'], 4)}</td>"
                     f"<td class='num'>{fmt(iv, 4)}</td></tr>")
    return f"<table>{head}{''.join(cells)}</table>"


def write(conn, key: str, path: str) -> str:
    html = render(fetch(conn, key))
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(html)
    except OSError as e:  # one raised by the write or the close names no file: name it
        raise OSError(e.errno, e.strerror, path) from None
    return path
