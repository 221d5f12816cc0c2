"""Band schemas kept as rows: load one for a fit or a model, and report its problems."""
from __future__ import annotations

import json

from . import bands, errors, source

_DOC_SQL = "SELECT ml.woe_anchor_band_schema($1)::text AS doc"


def _integer(text: str):
    """A JSON integer; one too long for Python's int() reads as an infinite float, which the checks refuse."""
    return int(text) if len(text) <= 100 else float(text)


def parse(doc_text: str) -> tuple[bands.BandSchema | None, list]:
    """(schema or None, problems) of a document of ml.woe_anchor_band_schema(version)."""
    doc = json.loads(doc_text, parse_int=_integer)
    return bands.schema_from_rows({k: v for k, v in doc.items() if k != "bands"}, doc["bands"])


def read(plpy, version) -> tuple[str, bands.BandSchema | None, list]:
    """(document, schema or None, problems) of the stored schema ``version``.

    A fit records the document it read; persisting it checks, under a lock on
    the schema's row, that the schema is still that (``persist.py``).
    """
    if version is None:
        raise errors.Refusal(errors.NULL_VALUE_NOT_ALLOWED, "band_schema_version must not be NULL")
    doc = plpy.execute(plpy.prepare(_DOC_SQL, ["int"]), [version])[0]["doc"]
    if doc is None:
        raise errors.Refusal(errors.UNDEFINED_OBJECT, f"band schema {version} does not exist",
                              hint="List schemas in ml.woe_anchor_band_schemas; copy one with "
                                   "ml.woe_anchor_copy_band_schema(from_version, to_version).")
    return (doc, *parse(doc))


def load(plpy, version) -> tuple[str, bands.BandSchema]:
    """(document, schema) of the stored schema ``version``; refuses one with problems, naming them all."""
    doc, schema, problems = read(plpy, version)
    if problems:
        listed = "; ".join(f"{b}: {p}" if b and not p.startswith("band ") else p for b, p in problems)
        raise errors.Refusal(errors.INVALID_PARAMETER_VALUE, f"band schema {version} is invalid: {listed}",
                              hint=f"See SELECT * FROM ml.woe_anchor_band_schema_problems({version});")
    return doc, schema


def problems(plpy, version, source_oid=None) -> list[tuple[str | None, str]]:
    """Everything wrong with schema ``version``, and with ``source`` for it when given."""
    _, schema, found = read(plpy, version)
    if schema is not None and source_oid is not None:
        try:
            source.resolve(plpy, source_oid, schema)
        except errors.Refusal as e:
            found.append((None, e.message))
    return found
