"""Resolve and check the caller's source relation against what a band schema reads."""
from __future__ import annotations

from dataclasses import dataclass

from . import bands, errors, sqlgen

NUMERIC_TYPES = ("smallint", "integer", "bigint", "real", "double precision", "numeric")
INTEGER_TYPES = ("smallint", "integer", "bigint")
TEXT_TYPES = ("text", "character varying", "character")
KEY_COLUMNS = ("generation", "listing_id", "t0")
# column -> accepted base types; feature columns are added per schema
KEY_AND_LABEL_COLUMNS = {
    "generation": INTEGER_TYPES,
    "listing_id": INTEGER_TYPES,
    "t0": ("timestamp with time zone",),
    "sold_time": ("timestamp with time zone",),
    "duration_hours": NUMERIC_TYPES,
    "final_status": TEXT_TYPES,
}

_COLUMNS_SQL = """
SELECT format('%I.%I', n.nspname, c.relname) AS qualified, c.relkind::text AS relkind,
       EXISTS (SELECT FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
               WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
                 AND d.deptype = 'e' AND e.extname = 'woe_anchor')
       OR EXISTS (SELECT FROM pg_catalog.pg_inherits i
                  WHERE i.inhrelid = c.oid AND i.inhparent = 'ml.woe_anchor_scores_v1'::regclass)
          AS is_own,
       coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum)
                 FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
                   AND NOT a.attisdropped), '{}') AS names,
       coalesce((SELECT array_agg(pg_catalog.format_type(coalesce(nullif(t.typbasetype, 0), t.oid), NULL)
                                  ORDER BY a.attnum)
                 FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '{}') AS types
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = $1
"""


@dataclass
class Source:
    qualified: str          # quoted schema.name, safe to splice into SQL
    reads: dict             # column -> read expression (float8, NaN as NULL)


def expected_types(schema: bands.BandSchema, labels: bool = True) -> dict:
    """Columns a fit (labels=True) or a scoring (labels=False) reads, with accepted types."""
    want = {c: t for c, t in KEY_AND_LABEL_COLUMNS.items() if labels or c in KEY_COLUMNS}

    def need(col, types):
        # a column read two ways (a key, a number, a category) must suit all of them
        want[col] = tuple(t for t in want[col] if t in types) if col in want else types

    boolean_ok = schema.boolean_ok
    for col in schema.columns:
        need(col, NUMERIC_TYPES + (("boolean",) if col in boolean_ok else ()))
    for col in schema.category_columns:
        need(col, INTEGER_TYPES + TEXT_TYPES)
    return want


def check_columns(have: dict, want: dict) -> None:
    """Name every missing column and every column of an unusable type at once."""
    missing = [c for c in want if c not in have]
    if missing:
        raise errors.FitError(
            errors.UNDEFINED_COLUMN,
            f"source is missing {len(missing)} required column(s): {', '.join(missing)}",
            hint="Expose them under these names, e.g. through a view over your table.")
    wrong = [f"{c} is {have[c]} (expected {' or '.join(want[c]) or 'a type no use of it shares'})"
             for c in want if have[c] not in want[c]]
    if wrong:
        raise errors.FitError(errors.DATATYPE_MISMATCH,
                              "source columns have unusable types: " + "; ".join(wrong),
                              hint="Cast them in a view over your table.")


def resolve(plpy, source_oid, schema: bands.BandSchema, labels: bool = True) -> Source:
    if source_oid is None:
        raise errors.FitError(errors.NULL_VALUE_NOT_ALLOWED, "source must not be NULL",
                              hint="Pass a table or view, e.g. source => 'public.listings'.")
    plan = plpy.prepare(_COLUMNS_SQL, ["oid"])
    rows = plpy.execute(plan, [source_oid])
    if not rows:
        raise errors.FitError(errors.UNDEFINED_TABLE, f"source relation with OID {source_oid} does not exist")
    row = rows[0]
    if row["relkind"] not in ("r", "v", "m", "p", "f"):
        raise errors.FitError(errors.WRONG_OBJECT_TYPE,
                              f"source {row['qualified']} is not a table, view or materialized view")
    if row["is_own"]:
        raise errors.FitError(errors.INVALID_PARAMETER_VALUE,
                              f"source {row['qualified']} is one of woe_anchor's own artifact tables")
    have = dict(zip(row["names"], row["types"]))
    want = expected_types(schema, labels)
    check_columns(have, want)
    numeric = (("duration_hours",) if labels else ()) + schema.columns
    reads = {c: sqlgen.column_read(c, have[c] == "boolean") for c in numeric}
    return Source(row["qualified"], reads)
