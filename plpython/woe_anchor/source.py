"""Resolve and check the caller's source relation against what a band schema reads."""
from __future__ import annotations

from dataclasses import dataclass

from . import bands, errors, sqlgen
from .catalog import SCORES

NUMERIC_TYPES = ("smallint", "integer", "bigint", "real", "double precision", "numeric")
INTEGER_TYPES = sqlgen.INTEGER_TYPES
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

_COLUMNS_SQL = f"""
SELECT format('%I.%I', n.nspname, c.relname) AS qualified, c.relkind::text AS relkind,
       c.relpersistence = 't' AS temporary,
       EXISTS (SELECT FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
               WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
                 AND d.deptype = 'e' AND e.extname = 'woe_anchor')
       OR EXISTS (SELECT FROM pg_catalog.pg_inherits i
                  WHERE i.inhrelid = c.oid AND i.inhparent = '{SCORES}'::regclass)
          AS is_own,
       coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum)
                 FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
                   AND NOT a.attisdropped), '{{}}') AS names,
       coalesce((SELECT array_agg(pg_catalog.format_type(coalesce(nullif(t.typbasetype, 0), t.oid), NULL)
                                  ORDER BY a.attnum)
                 FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '{{}}') AS types
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = $1
"""


@dataclass(frozen=True)
class Leaf:
    """Where some of a source's rows live: a local table, or a table on a postgres_fdw server."""
    relation: str            # what `FROM ... AS s` reads there (quoted; renamed columns mapped back)
    server: str | None       # the foreign server of a foreign leaf (None: local)


@dataclass
class Source:
    qualified: str          # quoted schema.name, safe to splice into SQL
    reads: dict             # column -> read expression (float8, NaN as NULL)
    leaves: tuple = ()      # set when rows live on postgres_fdw servers (see ``sharded``)
    temporary: bool = False  # a temporary table (this session's)


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


def check_columns(have: dict, want: dict, qualified: str) -> None:
    """Name every missing column and every column of an unusable type at once."""
    missing = [c for c in want if c not in have]
    if missing:
        raise errors.Refusal(
            errors.UNDEFINED_COLUMN,
            f"source {qualified} is missing {len(missing)} required column(s): {', '.join(missing)}",
            hint="Expose them under these names, e.g. through a view over your table.")
    wrong = [f"{c} is {have[c]} (expected {' or '.join(want[c]) or 'a type no use of it shares'})"
             for c in want if have[c] not in want[c]]
    if wrong:
        raise errors.Refusal(errors.DATATYPE_MISMATCH,
                              f"columns of source {qualified} have unusable types: " + "; ".join(wrong),
                              hint="Cast them in a view over your table.")


def resolve(plpy, source_oid, schema: bands.BandSchema, labels: bool = True) -> Source:
    if source_oid is None:
        raise errors.Refusal(errors.NULL_VALUE_NOT_ALLOWED, "source must not be NULL",
                              hint="Pass a table or view, e.g. source => 'public.listings'.")
    plan = plpy.prepare(_COLUMNS_SQL, ["oid"])
    rows = plpy.execute(plan, [source_oid])
    if not rows:
        raise errors.Refusal(errors.UNDEFINED_TABLE, f"source relation with OID {source_oid} does not exist")
    row = rows[0]
    if row["relkind"] not in ("r", "v", "m", "p", "f"):
        raise errors.Refusal(errors.WRONG_OBJECT_TYPE,
                              f"source {row['qualified']} is not a table, a view, a materialized view, a foreign "
                              "table or a partitioned table")
    if row["is_own"]:
        raise errors.Refusal(errors.INVALID_PARAMETER_VALUE,
                              f"source {row['qualified']} is one of woe_anchor's own artifact tables")
    have = dict(zip(row["names"], row["types"]))
    want = expected_types(schema, labels)
    check_columns(have, want, row["qualified"])
    numeric = (("duration_hours",) if labels else ()) + schema.columns
    reads = {c: sqlgen.column_read(c, have[c]) for c in numeric}
    leaves = _leaves(plpy, source_oid, row["qualified"]) if row["relkind"] in ("p", "f") else ()
    if not any(leaf.server for leaf in leaves):
        leaves = ()
    return Source(row["qualified"], reads, leaves, row["temporary"])


# Leaf tables of a partitioned source (or a foreign table itself), with how their server names them.
_LEAVES_SQL = """
SELECT format('%I.%I', n.nspname, c.relname) AS local_name, s.srvname::text AS server,
       pg_catalog.has_table_privilege(c.oid, 'SELECT') AS readable,
       pg_catalog.pg_get_partition_constraintdef(c.oid) AS constraint_def,
       w.fdwname::text AS wrapper, c.relrowsecurity AS rls,
       format('%I.%I', coalesce(o.schema_name, n.nspname), coalesce(o.table_name, c.relname)) AS remote_name,
       (SELECT array_agg(format('%I AS %I', coalesce(
                   (SELECT v.option_value FROM pg_catalog.pg_options_to_table(a.attfdwoptions) AS v
                    WHERE v.option_name = 'column_name'), a.attname), a.attname) ORDER BY a.attnum)
        FROM pg_catalog.pg_attribute AS a
        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
       EXISTS (SELECT FROM pg_catalog.pg_attribute AS a, pg_catalog.pg_options_to_table(a.attfdwoptions) AS v
               WHERE a.attrelid = c.oid AND v.option_name = 'column_name') AS renamed
FROM (SELECT t.relid FROM pg_catalog.pg_partition_tree($1) AS t WHERE t.isleaf
      UNION SELECT $1 WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_partition_tree($1))) AS l
JOIN pg_catalog.pg_class AS c ON c.oid = l.relid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_foreign_table AS f ON f.ftrelid = c.oid
LEFT JOIN pg_catalog.pg_foreign_server AS s ON s.oid = f.ftserver
LEFT JOIN pg_catalog.pg_foreign_data_wrapper AS w ON w.oid = s.srvfdw
LEFT JOIN LATERAL (SELECT max(v.option_value) FILTER (WHERE v.option_name = 'schema_name') AS schema_name,
                          max(v.option_value) FILTER (WHERE v.option_name = 'table_name') AS table_name
                   FROM pg_catalog.pg_options_to_table(f.ftoptions) AS v) AS o ON true
ORDER BY 1
"""


_GUARDED_SQL = """
SELECT c.relrowsecurity OR NOT pg_catalog.has_table_privilege(c.oid, 'SELECT') AS guarded
FROM pg_catalog.pg_class AS c WHERE c.oid = $1
"""


def _leaves(plpy, source_oid, qualified: str) -> tuple:
    """Each leaf of the source; a foreign leaf is read on its server under the server's names.

    Empty (so the rows are read through the source itself) unless every foreign leaf is
    postgres_fdw's and nothing asks PostgreSQL to filter rows for this role: the caller
    must be able to read the source, and no row-level security may apply to it or a leaf.
    """
    rows = plpy.execute(plpy.prepare(_LEAVES_SQL, ["oid"]), [source_oid])
    guarded = plpy.execute(plpy.prepare(_GUARDED_SQL, ["oid"]), [source_oid])[0]["guarded"]
    if guarded or any(r["rls"] or (r["server"] and r["wrapper"] != "postgres_fdw") for r in rows):
        return ()
    out = []
    for r in rows:
        if r["server"] is None and not r["readable"]:
            # the caller reads the source through its parent: so does the fit (the bound prunes the rest)
            out.append(Leaf(f"(SELECT * FROM {qualified} WHERE {r['constraint_def']})", None))
        elif r["server"] is None:
            out.append(Leaf(r["local_name"], None))
        elif r["renamed"]:
            out.append(Leaf(f"(SELECT {', '.join(r['columns'])} FROM {r['remote_name']})", r["server"]))
        else:
            out.append(Leaf(r["remote_name"], r["server"]))
    return tuple(out)
