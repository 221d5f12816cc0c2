"""Compile band schemas to SQL expressions.

Nothing from a schema or a caller reaches SQL as free text: column names go
through ``quote_ident``, numbers through ``float_lit``, labels through
``quote_literal``; operators and transforms come from fixed tables here.
"""
from __future__ import annotations

import math

from . import bands as b
from .catalog import MAPS

_TRANSFORM_SQL = {
    "identity": "{x}",
    "ln1p": "ln(1::float8 + {x})",
    "one_minus": "(1::float8 - {x})",
}


def quote_ident(name: str) -> str:
    """PostgreSQL identifier quoting (always quoted, so case and keywords are safe)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """A string literal that reads the same whatever standard_conforming_strings is."""
    if "\\" in text:
        return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"
    return "'" + text.replace("'", "''") + "'"


def float_lit(x: float) -> str:
    """An exact float8 literal: repr() round-trips, and infinities get their SQL names."""
    x = float(x)
    if math.isnan(x):
        return "'NaN'::float8"
    if math.isinf(x):
        return "'Infinity'::float8" if x > 0 else "'-Infinity'::float8"
    return f"'{x!r}'::float8"


def utc_iso_sql(timestamptz: str) -> str:
    """SQL text of an exact ISO 8601 UTC rendering of a timestamptz (NULL when infinite), read back
    as the same instant: a year before 1 carries its era (to_char's YYYY alone drops it)."""
    utc = f"({timestamptz}) AT TIME ZONE 'UTC'"
    return (f"to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS.US') || '+00' "
            f"|| CASE WHEN {utc} < '0001-01-01' THEN ' BC' ELSE '' END")


def column_read(column: str, sql_type: str, alias: str = "s") -> str:
    """How a source column of ``sql_type`` is read: float8, NaN as NULL, booleans as 0/1. An integer
    is never NaN: it skips the NULLIF, a function call per row and use in every band statement."""
    ref = f"{alias}.{quote_ident(column)}"
    if sql_type == "boolean":
        return f"({ref})::int::float8"
    if sql_type in INTEGER_TYPES:
        return f"({ref})::float8"
    return f"NULLIF(({ref})::float8, 'NaN'::float8)"


INTEGER_TYPES = ("smallint", "integer", "bigint")


class Compiler:
    """Compiles one schema's inputs, subsets and bands against a source's column reads.

    ``reads`` maps a column name to its read expression (``column_read``);
    ``learned`` maps learned threshold names to this model's values. A *live*
    compiler (``live`` = the SQL alias of a row with the model's ``model_key``
    and ``thresholds``) reads both from the stored artifacts at query time.
    """

    def __init__(self, schema: b.BandSchema, reads: dict[str, str],
                 learned: dict[str, float] | None = None, alias: str = "s", live: str | None = None):
        self.schema = schema
        self.reads = reads
        self.learned = learned or {}
        self.alias = alias
        self.live = live

    def input(self, inp: b.Input) -> str:
        if isinstance(inp, b.Column):
            return self.reads[inp.name]
        if isinstance(inp, b.WeightedSum):
            parts = [float_lit(inp.constant)] if inp.constant else []
            for t in inp.terms:
                x = f"COALESCE({self.reads[t.column]}, 0::float8)"
                parts.append(f"{float_lit(t.coef)} * {_TRANSFORM_SQL[t.transform].format(x=x)}")
            # infinities of opposite sign sum to NaN: read it as NULL, as a NaN column reads
            return "NULLIF((" + " + ".join(parts) + "), 'NaN'::float8)"
        if isinstance(inp, b.UtcYearOfT0):
            year = f"date_part('year', ({self.alias}.t0 AT TIME ZONE 'UTC'))"
            return f"({year} + {float_lit(inp.offset)})" if inp.offset else year
        raise TypeError(f"unknown input {inp!r}")

    def input_in(self, inp: b.Input, subsets: tuple | None) -> str:
        """``input`` read on the rows of ``subsets`` alone (NULL elsewhere; None: every row): the
        scoring reads it nowhere else, and a transform may fail outside them (ln1p of a negative
        count, on a row that has no assets)."""
        x = self.input(inp)
        if subsets is None:
            return x
        return f"CASE WHEN {' OR '.join(self.subset(name) for name in subsets)} THEN {x} END"

    def value(self, operand: b.Operand) -> float | None:
        """A threshold's number, or None when only the query knows it (live, or an input)."""
        if isinstance(operand, b.Learned):
            return None if self.live else self.learned[operand.name]
        return operand if isinstance(operand, (int, float)) else None

    def operand(self, operand: b.Operand) -> str:
        if isinstance(operand, b.Learned) and self.live:
            return f"({self.live}.thresholds ->> {quote_literal(operand.name)})::float8"
        value = self.value(operand)
        return self.input(operand) if value is None else float_lit(value)

    def test(self, t: b.Test) -> str:
        if t.op not in b.OPS:
            raise ValueError(f"unknown operator {t.op!r}")
        return f"{self.input(t.input)} {t.op} {self.operand(t.operand)}"

    def subset(self, name: str) -> str:
        """A boolean that is never NULL: does the row belong to the subset."""
        return f"COALESCE({self.test(self.schema.subsets[name])}, false)"

    def band(self, band: b.Band, as_label: bool = False) -> str:
        """Expression giving the band's integer code (or its label text)."""
        if band.category is not None:
            code = self._category(band, as_label)
            return f"CASE WHEN {self.subset(band.subset)} THEN {code} END" if band.subset else code
        labels = band.labels

        def out(label: str) -> str:
            return quote_literal(label) if as_label else str(labels.index(label))

        ladder = self._ladder(band, out, as_label)
        if ladder is not None:
            if band.subset:
                return f"CASE WHEN {self.subset(band.subset)} THEN {ladder} END"
            return ladder
        whens = []
        if band.subset:
            whens.append(f"WHEN NOT {self.subset(band.subset)} THEN NULL")
        if band.null_label:
            whens.append(f"WHEN {self.input(band.null_input)} IS NULL THEN {out(band.null_label)}")
        for rule in band.rules:
            cond = " AND ".join(f"({self.test(t)})" for t in rule.tests)
            whens.append(f"WHEN {cond} THEN {out(rule.label)}")
        return f"CASE {' '.join(whens)} ELSE {out(band.default)} END"

    def _ladder(self, band: b.Band, out, as_label: bool) -> str | None:
        """A one-input threshold ladder as one width_bucket lookup (its input read once).

        width_bucket(x, t) counts the thresholds <= x. For rules ``x >= a_i``
        (a descending) that count picks the label directly; ``x < c_i`` (c
        ascending) likewise; ``<=`` and ``>`` count on -x against -t.
        Returns None when the band is not such a ladder.
        """
        tests = [r.tests[0] for r in band.rules if len(r.tests) == 1]
        if not tests or len(tests) != len(band.rules):
            return None
        ops = {t.op for t in tests}
        if len(ops) != 1 or ops.pop() == "=" or len({t.input for t in tests}) != 1:
            return None
        if band.null_label and band.null_input != tests[0].input:
            return None
        op = tests[0].op
        values = [self.value(t.operand) for t in tests]
        if any(v is None for v in values):
            return None  # thresholds known only at query time (live views) stay a CASE
        x = self.input(tests[0].input)
        rule_labels = [r.label for r in band.rules]
        if op in (">=", ">"):
            if any(values[i] < values[i + 1] for i in range(len(values) - 1)):
                return None
            # ascending thresholds a_k..a_1; count 0 -> default, count j -> label of a_(k-j+1)
            order = list(reversed(range(len(values))))
            picks = [band.default] + [rule_labels[i] for i in order]
        else:
            if any(values[i] > values[i + 1] for i in range(len(values) - 1)):
                return None
            order = list(range(len(values)))
            picks = rule_labels + [band.default]
        thresholds = [values[i] for i in order]
        if op in ("<=", ">"):
            # count on the negated axis turns strict into non-strict and back
            x = f"-({x})"
            thresholds = [-v for v in reversed(thresholds)]
            picks = list(reversed(picks))
        kind = "text" if as_label else "int"
        lookup = "ARRAY[" + ", ".join(out(label) for label in picks) + f"]::{kind}[]"
        edges = "ARRAY[" + ", ".join(float_lit(v) for v in thresholds) + "]::float8[]"
        code = f"({lookup})[width_bucket({x}, {edges}) + 1]"
        # width_bucket of NULL is NULL: the null label, else (a NULL satisfies no test) the default
        return f"coalesce({code}, {out(band.null_label or band.default)})"

    def category_read(self, band: b.Band) -> str:
        """A category band's raw value as text (integer columns print canonically)."""
        return f"({self.alias}.{quote_ident(band.category.column)})::text"

    def _category(self, band: b.Band, as_label: bool) -> str:
        """The value's code among the model's kept values, else OTHER (NULL_VALUE for NULL).

        A live compiler asks the model's final map whether the value was kept.
        """
        x = self.category_read(band)
        other, null = quote_literal(b.OTHER), quote_literal(b.NULL_VALUE)
        if self.live:
            kept = (f"EXISTS (SELECT FROM {MAPS} AS v WHERE v.model_key = {self.live}.model_key "
                    f"AND v.fold_id IS NULL AND v.band_name = {quote_literal(band.name)} "
                    f"AND v.band_value = {x} AND v.band_value NOT IN ({other}, {null}))")
            return f"CASE WHEN {x} IS NULL THEN {null} WHEN {kept} THEN {x} ELSE {other} END"
        n = len(band.values)
        if as_label:
            vocab = "ARRAY[" + ", ".join(quote_literal(v) for v in band.values) + "]::text[]"
            return f"CASE WHEN {x} IS NULL THEN {null} WHEN {x} = ANY ({vocab}) THEN {x} ELSE {other} END"
        if not n:
            return f"CASE WHEN {x} IS NULL THEN {n + 1} ELSE {n} END"
        vocab = "ARRAY[" + ", ".join(quote_literal(v) for v in band.values) + "]::text[]"
        return f"coalesce(array_position({vocab}, {x}) - 1, CASE WHEN {x} IS NULL THEN {n + 1} ELSE {n} END)"
