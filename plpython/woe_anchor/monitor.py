"""Monitoring a stored model against the live population: drift of its bands (PSI).

Training is what the model's final fit learned from (its map's row counts per
band value); the window is the source's rows with t0 in [start, end), banded
by the model's frozen mapping in one pass. Per band value: the rows and shares
on each side and its PSI term; per band: the PSI and its usual reading.
"""
from __future__ import annotations

import math

from . import bands, source, woe
from .catalog import MAPS
from .errors import Refusal
from .inference import load_model
from .sqlgen import Compiler, quote_literal, utc_iso_sql

# shares below this count as this (the usual smoothing: a value one side never had adds a large,
# finite term)
SHARE_FLOOR = 1e-4
# the usual reading of a band's PSI: below 0.1 stable, up to 0.25 moderate, above it major
READINGS = ((0.1, "stable"), (0.25, "moderate"), (math.inf, "major"))


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
    model = load_model(plpy, key)
    src = source.resolve(plpy, source_oid, model.schema, labels=False)
    bound = plpy.prepare(f"SELECT {utc_iso_sql('$1::timestamptz')} AS t", ["text"])
    start, end = (quote_literal(plpy.execute(bound, [x])[0]["t"]) + "::timestamptz" for x in (start, end))
    c = Compiler(model.schema, src.reads, model.learned)
    values = ", ".join(f"({i}, {c.band(band, as_label=True)})" for i, band in enumerate(model.schema.bands))
    window = {}
    for r in plpy.execute(f"""
SELECT u.band, u.band_value, count(*) AS n
FROM {src.qualified} AS s CROSS JOIN LATERAL (VALUES {values}) AS u (band, band_value)
WHERE s.t0 >= {start} AND s.t0 < {end} AND u.band_value IS NOT NULL
GROUP BY 1, 2"""):
        window[(r["band"], r["band_value"])] = int(r["n"])
    trained = {(r["band_name"], r["band_value"]): int(r["n_rows"]) for r in plpy.execute(plpy.prepare(
        f"SELECT band_name, band_value, n_rows FROM {MAPS} WHERE model_key = $1 AND fold_id IS NULL",
        ["text"]), [model.key])}
    out = []
    for i, band in enumerate(model.schema.bands):
        labels = [label for label in bands.display_order(band)
                  if trained.get((band.name, label), 0) or window.get((i, label), 0)]
        train = [trained.get((band.name, label), 0) for label in labels]
        live = [window.get((i, label), 0) for label in labels]
        terms = psi_terms(train, live)
        band_psi = woe.total(terms)
        n_train, n_window = sum(train), sum(live)
        for label, t, w, term in zip(labels, train, live, terms):
            out.append((band.name, label, t, w, t / n_train if n_train else None, w / n_window if n_window else None,
                        term, band_psi, reading(band_psi), t == 0))
    return out
