"""Generate extension/woe_anchor--<version>.sql from sql/ and plpython/woe_anchor/.

Usage: python3 extension/build.py VERSION OUTPUT SQL_FILE... -- MODULE...
SQL files are concatenated in the order given; the Python modules (in
dependency order) are inlined into the loader function, so installing the
extension needs nothing but its SQL script.
"""
import hashlib
import importlib.util
import json
import re
import sys
from pathlib import Path

PY_DOLLAR_TAG = "$woe_anchor_py$"


def sql_text(text):
    return "'" + text.replace("'", "''") + "'"


def load_module(path, name):
    """A module of the package, loaded on its own (bands.py and catalog.py import nothing relative)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def built_in_schemas(bands_module):
    """INSERTs of the schemas that ship with the extension, from their one definition in bands.py."""
    bands = load_module(bands_module, "woe_anchor_bands")
    out = []
    for schema in bands.BUILT_IN.values():
        head, rows = bands.schema_to_rows(schema)
        out.append("INSERT INTO ml.woe_anchor_band_schemas (version, description, subsets, learned) VALUES "
                   f"({head['version']}, {sql_text(head['description'])}, {sql_text(json.dumps(head['subsets']))}, "
                   f"{sql_text(json.dumps(head['learned']))});")
        values = ",\n".join(
            f"    ({schema.version}, {r['position']}, {sql_text(r['band_name'])}, {sql_text(r['column_name'])}, "
            f"{'NULL' if r['subset'] is None else sql_text(r['subset'])}, {sql_text(json.dumps(r['rule']))})"
            for r in rows)
        out.append("INSERT INTO ml.woe_anchor_bands (schema_version, position, band_name, column_name, subset, rule) "
                   f"VALUES\n{values};")
    return "\n".join(out)


# An upgrade script re-creates every routine and trigger in place; tables change only through
# the frozen migration it starts with (sql/migrations/<from>--<to>.sql).
REPLACEABLE = re.compile(r"^CREATE (FUNCTION|PROCEDURE|TRIGGER) ", re.M)


def is_upgrade(output):
    return re.search(r"--[^-/]+--[^/]+\.sql$", output) is not None


def render(version, sql_files, modules, upgrade=False):
    sources = [(Path(m).stem, Path(m).read_text()) for m in modules]
    for name, text in sources:
        if PY_DOLLAR_TAG in text:
            sys.exit(f"{name}: must not contain {PY_DOLLAR_TAG}")
    digest = hashlib.sha256()
    for name, text in sources:
        digest.update(f"{name}\0{text}\0".encode())
    # keyed by the code's hash too: a session never keeps stale code after a reinstall
    package_key = f"woe_anchor/{version}/{digest.hexdigest()[:16]}"
    load_package = (f"if {package_key!r} not in GD:\n"
                    f"    plpy.execute('SELECT woe_anchor_internal.load_package()')\n"
                    f"woe_anchor = GD[{package_key!r}]")
    # PL/pgSQL wrappers catch whatever the PL/Python layer raised and re-raise it plainly
    error_variables = "state text; message text; detail text; hint text;"
    def reraise(first=""):
        return ("EXCEPTION WHEN OTHERS OR query_canceled THEN\n"
                "    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,\n"
                "                            detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;\n"
                + (f"    {first}\n" if first else "") +
                "    PERFORM woe_anchor_internal.reraise(state, message, detail, hint);")
    values = {
        "@EXTVERSION@": repr(version),
        "@PACKAGE_KEY@": repr(package_key),
        "@PACKAGE_NAME@": repr("woe_anchor_" + re.sub(r"\W", "_", version)),
        "@CODE_SHA256@": repr(digest.hexdigest()),
        "@MODULES@": repr(tuple(sources)),
        "@LOAD_PACKAGE@": load_package,
        "@ERROR_VARIABLES@": error_variables,
        "@RERAISE_AS_PLAIN_ERROR@": reraise(),
        # timestamptz arguments reach PL/Python as text in the session's style: ISO with a numeric
        # offset reads back as the same instant (a zone abbreviation, such as IST, may not)
        "@TIMESTAMPS_AS_UTC_ISO@": "SET TimeZone = 'UTC'\nSET DateStyle = 'ISO, YMD'",
        # a statement that read shard tables closes those reads, whether it failed or not
        "@END_SHARD_READS_AND_RERAISE@": "    PERFORM woe_anchor_internal.end_shard_reads();\n"
                                         + reraise("PERFORM woe_anchor_internal.end_shard_reads();"),
    }
    # the fit's defaults, declared by every routine that takes the fit's parameters
    catalog = load_module(next(m for m in modules if Path(m).name == "catalog.py"), "woe_anchor_catalog")
    values.update({f"@DEFAULT:{name}@": literal for name, literal in catalog.FIT_DEFAULTS.items()})
    # routines whose band passes compile (passes.compiled_pass) declare every JIT setting it changes:
    # PostgreSQL puts each back as the caller had it when the routine returns; jit stays off for
    # their other statements
    values["@COMPILED_PASSES@"] = "\n".join(
        ["SET jit = off"] + [f"SET {name} = {value}" for name, value in catalog.COMPILED_PASS_SETTINGS.items()])
    values["@LEARNING_PARAMETERS@"] = ",\n".join(f"    {name} {kind} DEFAULT {default}"
                                                  for name, kind, default in catalog.LEARNING_PARAMETERS)
    if any("@BUILT_IN_SCHEMAS@" in Path(f).read_text() for f in sql_files):
        values["@BUILT_IN_SCHEMAS@"] = built_in_schemas(next(m for m in modules if Path(m).name == "bands.py"))
    parts = []
    for f in sql_files:
        text = Path(f).read_text()
        for k, v in values.items():
            if k != "@MODULES@":
                text = text.replace(k, v)
        left = re.findall(r"@[A-Z_]+(?::\w+)?@", text.replace("@MODULES@", ""))
        if left:
            sys.exit(f"{f}: unknown placeholders {sorted(set(left))}")
        # the package's own text last: nothing in a module is read as a placeholder
        text = text.replace("@MODULES@", values["@MODULES@"])
        if upgrade:
            text = text.replace('"CREATE EXTENSION woe_anchor CASCADE"', '"ALTER EXTENSION woe_anchor UPDATE"')
            if "/functions/" in f or f.endswith("grants.sql"):
                text = REPLACEABLE.sub(lambda m: f"CREATE OR REPLACE {m.group(1)} ", text)
        parts.append(f"-- source: {f}\n{text.rstrip()}\n")
    return "\n".join(parts)


def main(argv):
    version, output, rest = argv[0], argv[1], argv[2:]
    split = rest.index("--")
    Path(output).write_text(render(version, rest[:split], rest[split + 1:], upgrade=is_upgrade(output)))


if __name__ == "__main__":
    main(sys.argv[1:])
