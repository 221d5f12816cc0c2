"""Band schemas as data: what each band reads and how it maps inputs to labels.

The engine never hard-wires a band: it compiles these descriptions to SQL
(``sqlgen``) and learns WOE per label. Users keep schemas as rows of
``ml.woe_anchor_band_schemas`` and ``ml.woe_anchor_bands`` (a JSON rule per
band); ``schema_from_rows`` parses and checks them, ``schema_to_rows`` writes
them. Schema 1 below is docs/contract.md section 5 and ships as such rows.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Union

# ---------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Column:
    """A numeric source column read as float8 (NaN reads as NULL)."""
    name: str


@dataclass(frozen=True)
class Term:
    """coef * transform(column) inside a weighted sum; NULL counts as 0."""
    coef: float
    column: str
    transform: str = "identity"  # one of TRANSFORMS


TRANSFORMS = ("identity", "ln1p", "one_minus")


@dataclass(frozen=True)
class WeightedSum:
    """constant + sum of terms; never NULL because every NULL input reads as 0."""
    terms: tuple[Term, ...]
    constant: float = 0.0


@dataclass(frozen=True)
class UtcYearOfT0:
    """The UTC calendar year of t0 plus an offset (trust tenure needs year - 3)."""
    offset: int = 0


Input = Union[Column, WeightedSum, UtcYearOfT0]

# ---------------------------------------------------------------- rules


@dataclass(frozen=True)
class Learned:
    """A threshold learned at fit time and stored with the model (e.g. dsold_t1)."""
    name: str


Operand = Union[float, Learned, Input]


@dataclass(frozen=True)
class Test:
    """input <op> operand; a NULL on either side never satisfies the test."""
    input: Input
    op: str  # one of OPS
    operand: Operand


OPS = ("<", "<=", "=", ">=", ">")


@dataclass(frozen=True)
class Rule:
    """The first rule whose tests all hold gives the label."""
    label: str
    tests: tuple[Test, ...]


@dataclass(frozen=True)
class Category:
    """A text or integer column passed through as the band value.

    Each fit keeps the values whose weighted count over its own learned rows
    (normalised weights, the band's subset) is at least ``min_weight``; every
    other value, seen or not, is OTHER, and NULL is NULL_VALUE.
    """
    column: str
    min_weight: float


OTHER = "__other__"
NULL_VALUE = "__null__"
RESERVED_LABELS = (OTHER, NULL_VALUE)


@dataclass(frozen=True)
class Band:
    name: str                 # band_name in the map, e.g. 'dsold'
    column: str               # output column name, e.g. 'dsold_band'
    rules: tuple[Rule, ...]   # checked in order
    default: str              # label when no rule matches
    null_input: Input | None = None  # when given, NULL here yields null_label first
    null_label: str | None = None
    subset: str | None = None  # e.g. 'has_assets': band exists only on that subset
    kind: str = "rules"        # how it is written as a row: one of KINDS
    category: Category | None = None
    values: tuple[str, ...] | None = None  # a category band's values, resolved per model

    @property
    def labels(self) -> tuple[str, ...]:
        """Every label this band can produce; a label's code is its index here."""
        if self.category is not None:
            if self.values is None:
                raise ValueError(f"category band {self.name!r} has no resolved values")
            return self.values + RESERVED_LABELS
        out: list[str] = []
        for label in ([self.null_label] if self.null_label else []) + \
                [r.label for r in self.rules] + [self.default]:
            if label not in out:
                out.append(label)
        return tuple(out)


KINDS = ("ladder", "flags", "rules", "category")

# ---------------------------------------------------------------- learned thresholds


@dataclass(frozen=True)
class ScaleRule:
    """``small`` when median(|input|) over the learned rows is below ``below``, else ``large``.

    A fit parameter named ``parameter`` (e.g. dsold_thresholds), when given,
    replaces the rule.
    """
    names: tuple[str, ...]
    input: Input
    below: float
    small: tuple[float, ...]
    large: tuple[float, ...]
    parameter: str | None = None


@dataclass(frozen=True)
class QuantileRule:
    """Unweighted quantiles (percentile_cont) of the input over the learned rows of a subset.

    With n >= min_rows non-NULL values each name gets its quantile; with fewer
    every name gets the median; with none every name gets ``empty``.
    """
    names: tuple[str, ...]
    input: Input
    probs: tuple[float, ...]
    min_rows: int
    subset: str | None = None
    empty: float = 0.0


LearnedRule = Union[ScaleRule, QuantileRule]

# ---------------------------------------------------------------- schemas


@dataclass(frozen=True)
class BandSchema:
    version: int
    bands: tuple[Band, ...]
    subsets: dict = field(default_factory=dict)  # subset name -> Test that defines it
    learning: tuple[LearnedRule, ...] = ()
    description: str = ""

    @property
    def columns(self) -> tuple[str, ...]:
        """Every source column read as a number by a band, subset, weighted sum or learned rule."""
        seen: list[str] = []

        def add_input(inp):
            if isinstance(inp, Column):
                names = [inp.name]
            elif isinstance(inp, WeightedSum):
                names = [t.column for t in inp.terms]
            else:
                names = []
            seen.extend(n for n in names if n not in seen)

        tests = [t for b in self.bands for r in b.rules for t in r.tests]
        tests += list(self.subsets.values())
        for t in tests:
            add_input(t.input)
            if not isinstance(t.operand, (int, float, Learned)):
                add_input(t.operand)
        for b in self.bands:
            if b.null_input is not None:
                add_input(b.null_input)
        for rule in self.learning:
            add_input(rule.input)
        return tuple(seen)

    @property
    def category_columns(self) -> tuple[str, ...]:
        """Source columns read as text values by category bands."""
        return tuple(dict.fromkeys(b.category.column for b in self.bands if b.category))

    @property
    def boolean_ok(self) -> tuple[str, ...]:
        """Columns that may be boolean (read as 0/1): flags and weighted-sum terms."""
        out = [t.input.name for b in self.bands if b.kind == "flags" for r in b.rules for t in r.tests]
        for t in [t for b in self.bands for r in b.rules for t in r.tests] + list(self.subsets.values()):
            if isinstance(t.input, WeightedSum):
                out += [term.column for term in t.input.terms]
        for rule in self.learning:
            if isinstance(rule.input, WeightedSum):
                out += [term.column for term in rule.input.terms]
        return tuple(dict.fromkeys(out))

    def learned_names(self) -> tuple[str, ...]:
        return tuple(n for rule in self.learning for n in rule.names)

    def resolve(self, values: dict) -> BandSchema:
        """This schema with each category band's values (band name -> tuple of text) filled in."""
        return dataclasses.replace(self, bands=tuple(
            dataclasses.replace(b, values=tuple(values[b.name])) if b.category else b for b in self.bands))


# ---------------------------------------------------------------- constructors


def ladder(name, column, input_, steps, default, null_label=None, subset=None) -> Band:
    """A numeric ladder: steps are (op, threshold, label), first match wins."""
    rules = tuple(Rule(label, (Test(input_, op, thr),)) for op, thr, label in steps)
    return Band(name, column, rules, default,
                null_input=input_ if null_label else None, null_label=null_label,
                subset=subset, kind="ladder")


def flags(name, column, choices, default, subset=None) -> Band:
    """The first label whose 0/1 inputs has one equal to 1 wins."""
    rules = tuple(Rule(label, (Test(Column(c), "=", 1.0),))
                  for label, cols in choices for c in cols)
    return Band(name, column, rules, default, subset=subset, kind="flags")


def category(name, column, source_column, min_weight, subset=None) -> Band:
    return Band(name, column, (), OTHER, subset=subset, kind="category",
                category=Category(source_column, float(min_weight)))


# ---------------------------------------------------------------- schema 1

_PRESENTATION = WeightedSum((
    Term(0.30, "image_count", "ln1p"),
    Term(0.25, "photo_quality_avg"),
    Term(0.20, "bg_clean_avg"),
    Term(0.15, "stock_photo_share", "one_minus"),
    Term(0.10, "caption_share"),
))
_ACCESSORIES = WeightedSum((
    Term(1.0, "charger_bundle_level"),
    Term(1.0, "box_present"),
    Term(1.0, "receipt_present"),
))


def _damage(name, column, source, prefix, subset=None) -> Band:
    x = Column(source)
    return ladder(name, column, x,
                  ((">=", 3.0, f"{prefix}_3p"), ("=", 2.0, f"{prefix}_2"),
                   ("=", 1.0, f"{prefix}_1")),
                  f"{prefix}_0", null_label=f"{prefix}_missing", subset=subset)


SCHEMA_1 = BandSchema(
    version=1,
    description="SPEC.md schema 1: the ten slow21 bands of the Python trainer",
    subsets={"has_assets": Test(Column("image_count"), ">", 0.0)},
    learning=(
        ScaleRule(("dsold_t1", "dsold_t2", "dsold_t3", "dsold_t4"), Column("delta_vs_sold_median_30d"),
                  below=5.0, small=(-0.15, -0.05, 0.05, 0.15), large=(-2000.0, -500.0, 500.0, 2000.0),
                  parameter="dsold_thresholds"),
        QuantileRule(("c1", "c2"), _PRESENTATION, probs=(1.0 / 3.0, 2.0 / 3.0), min_rows=50,
                     subset="has_assets"),
    ),
    bands=(
        ladder("dsold", "dsold_band", Column("delta_vs_sold_median_30d"),
               (("<=", Learned("dsold_t1"), "dSold_cheap"),
                ("<=", Learned("dsold_t2"), "dSold_under"),
                ("<=", Learned("dsold_t3"), "dSold_fair"),
                ("<=", Learned("dsold_t4"), "dSold_over")),
               "dSold_overpriced", null_label="dSold_missing"),
        Band("trust", "trust_tier", (
            Rule("HIGH", (Test(Column("seller_rating"), ">=", 9.7),
                          Test(Column("review_count"), ">=", 50.0),
                          Test(Column("member_since_year"), "<=", UtcYearOfT0(-3)))),
            Rule("MED", (Test(Column("seller_rating"), ">=", 9.0),
                         Test(Column("review_count"), ">=", 10.0))),
        ), "LOW"),
        flags("ship", "ship_band",
              (("pickup_heavy", ("ai_pickup_only_bin", "ai_ship_pickup")),
               ("shipping_ok", ("ai_ship_can",))), "ship_unknown"),
        flags("sale", "sale_band",
              (("firm", ("ai_sale_mode_firm",)), ("bids", ("ai_sale_mode_bids",)),
               ("obo", ("ai_sale_mode_obo",))), "sale_unspec"),
        ladder("cond", "cond_band", Column("condition_score"),
               ((">=", 0.90, "cond_hi"), (">=", 0.70, "cond_mid")),
               "cond_lo", null_label="cond_missing"),
        _damage("dmg", "dmg_ai_band", "damage_severity_ai", "dmg"),
        ladder("bat", "bat_band", Column("battery_pct_effective"),
               ((">=", 95.0, "bat_hi"), (">=", 88.0, "bat_mid")),
               "bat_lo", null_label="bat_missing"),
        ladder("present", "presentation_band", _PRESENTATION,
               (("<", Learned("c1"), "present_lo"), ("<", Learned("c2"), "present_mid")),
               "present_hi", subset="has_assets"),
        _damage("vdmg", "vdmg_band", "dmg_band_hq_struct", "vdmg", subset="has_assets"),
        ladder("acc", "accessories_band", _ACCESSORIES,
               (("<=", 0.0, "acc_lo"), ("<", 2.0, "acc_mid")),
               "acc_hi", subset="has_assets"),
    ),
)

BUILT_IN = {1: SCHEMA_1}  # shipped as rows by the extension script, never editable

# ---------------------------------------------------------------- rows <-> schemas

NAME_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# source columns are plain SQL identifiers (any case); expose other names through a view
COLUMN_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")
# labels are data, always quoted; still, nothing that looks like SQL gets in
LABEL_RE = re.compile(r"[\w .,+\-<>=%/()]{1,200}")
LABEL_CHARS = "letters, digits, spaces and _ . , + - < > = % / ( )"
# a band that reads the label's own inputs would leak the target into its WOE
LABEL_COLUMNS = ("sold_time", "duration_hours", "final_status")
KEY_OUTPUTS = ("generation", "listing_id", "t0", "model_key", "base_logit")
# years added to t0's UTC year: far beyond any calendar, still an exact SQL integer
MAX_YEAR_OFFSET = 10_000


class SchemaError(ValueError):
    """A schema row that cannot be read; the message says where and why."""


def _need(doc, key, kinds, where):
    if not isinstance(doc, dict) or key not in doc:
        raise SchemaError(f"{where}: missing {key!r}")
    value = doc[key]
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        raise SchemaError(f"{where}: {key!r} must be {' or '.join(k.__name__ for k in kinds)}")
    return value


def _number(doc, key, where, default=None) -> float:
    if default is not None and key not in doc:
        return default
    try:
        value = float(_need(doc, key, (int, float), where))
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        raise SchemaError(f"{where}: {key!r} must be a finite float8")
    return value


def _label(value, where) -> str:
    if not isinstance(value, str) or not LABEL_RE.fullmatch(value):
        raise SchemaError(f"{where}: label {value!r} must be 1 to 200 of {LABEL_CHARS}")
    return value


def _column(value, where) -> str:
    if not isinstance(value, str) or not COLUMN_RE.fullmatch(value):
        raise SchemaError(f"{where}: column {value!r} must be a plain SQL identifier (letters, digits, _ and $, "
                          "at most 63); expose other names through a view")
    name = value
    if name in LABEL_COLUMNS:
        raise SchemaError(f"{where}: column {name!r} defines the label; reading it would leak the target")
    return name


def _name(value, what, where) -> str:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise SchemaError(f"{where}: {what} {value!r} must be a lower-case identifier (a-z, 0-9, _)")
    return value


def _list(doc, key, where) -> list:
    value = _need(doc, key, (list,), where)
    if not value:
        raise SchemaError(f"{where}: {key!r} must not be empty")
    return value


def input_from_json(doc, where) -> Input:
    if not isinstance(doc, dict) or len(doc.keys() & {"column", "sum", "t0_utc_year"}) != 1:
        raise SchemaError(f"{where}: an input is {{\"column\": ...}}, {{\"sum\": [...]}} or {{\"t0_utc_year\": offset}}")
    if "column" in doc:
        return Column(_column(doc["column"], where))
    if "t0_utc_year" in doc:
        offset = _number(doc, "t0_utc_year", where)
        if offset != int(offset) or abs(offset) > MAX_YEAR_OFFSET:
            raise SchemaError(f"{where}: t0_utc_year must be a whole number of years, at most {MAX_YEAR_OFFSET} "
                              "either way")
        return UtcYearOfT0(int(offset))
    terms = []
    for term in _list(doc, "sum", where):
        transform = term.get("transform", "identity") if isinstance(term, dict) else None
        if transform not in TRANSFORMS:
            raise SchemaError(f"{where}: transform {transform!r} is not one of {', '.join(TRANSFORMS)}")
        terms.append(Term(_number(term, "coef", where), _column(_need(term, "column", (str,), where), where),
                          transform))
    return WeightedSum(tuple(terms), _number(doc, "constant", where, 0.0))


def input_to_json(inp: Input) -> dict:
    if isinstance(inp, Column):
        return {"column": inp.name}
    if isinstance(inp, UtcYearOfT0):
        return {"t0_utc_year": inp.offset}
    doc = {"sum": [{"coef": t.coef, "column": t.column, **({"transform": t.transform}
                                                          if t.transform != "identity" else {})}
                   for t in inp.terms]}
    return doc | ({"constant": inp.constant} if inp.constant else {})


def _operand_from_json(value, where) -> Operand:
    if isinstance(value, dict) and "learned" in value:
        return Learned(_name(value["learned"], "a learned threshold name", where))
    if isinstance(value, dict):
        return input_from_json(value, where)
    return _number({"value": value}, "value", where)


def _operand_to_json(operand: Operand):
    if isinstance(operand, Learned):
        return {"learned": operand.name}
    if isinstance(operand, (int, float)):
        return operand
    return input_to_json(operand)


def test_from_json(doc, where) -> Test:
    op = _need(doc, "op", (str,), where)
    if op not in OPS:
        raise SchemaError(f"{where}: operator {op!r} is not one of {' '.join(OPS)}")
    return Test(input_from_json(_need(doc, "input", (dict,), where), where), op,
                _operand_from_json(_need(doc, "value", (int, float, dict), where), where))


def test_to_json(t: Test) -> dict:
    return {"input": input_to_json(t.input), "op": t.op, "value": _operand_to_json(t.operand)}


def band_from_row(name, column, subset, rule) -> Band:
    """One ``ml.woe_anchor_bands`` row as a Band; SchemaError when it cannot be read."""
    where = f"band {name!r}"
    name = _name(name, "band name", where)
    column = _name(column, "column name", where)
    if column in KEY_OUTPUTS:
        raise SchemaError(f"{where}: output column {column!r} clashes with a key column of the views")
    if subset is not None:
        subset = _name(subset, "subset name", where)
    kind = _need(rule, "kind", (str,), where)
    if kind == "category":
        floor = _number(rule, "min_weight", where)
        if floor < 0:
            raise SchemaError(f"{where}: min_weight must be >= 0")
        return category(name, column, _column(_need(rule, "column", (str,), where), where), floor, subset)
    default = _label(_need(rule, "else", (str,), where), where)
    if kind == "ladder":
        x = input_from_json(_need(rule, "input", (dict,), where), where)
        steps = []
        for step in _list(rule, "steps", where):
            op = _need(step, "op", (str,), where)
            if op not in OPS:
                raise SchemaError(f"{where}: operator {op!r} is not one of {' '.join(OPS)}")
            steps.append((op, _operand_from_json(_need(step, "value", (int, float, dict), where), where),
                          _label(_need(step, "label", (str,), where), where)))
        null = _label(rule["null"], where) if "null" in rule else None
        return ladder(name, column, x, steps, default, null_label=null, subset=subset)
    if kind == "flags":
        choices = [(_label(_need(c, "label", (str,), where), where),
                    tuple(_column(col, where) for col in _list(c, "columns", where)))
                   for c in _list(rule, "choices", where)]
        return flags(name, column, choices, default, subset=subset)
    if kind == "rules":
        rules = tuple(Rule(_label(_need(r, "label", (str,), where), where),
                           tuple(test_from_json(t, where) for t in _list(r, "all", where)))
                      for r in _list(rule, "rules", where))
        return Band(name, column, rules, default, subset=subset, kind="rules")
    raise SchemaError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")


def band_to_rule(band: Band) -> dict:
    """The JSON rule of an ``ml.woe_anchor_bands`` row."""
    if band.kind == "category":
        return {"kind": "category", "column": band.category.column, "min_weight": band.category.min_weight}
    if band.kind == "ladder":
        doc = {"kind": "ladder", "input": input_to_json(band.rules[0].tests[0].input)}
        if band.null_label:
            doc["null"] = band.null_label
        doc["steps"] = [{"op": r.tests[0].op, "value": _operand_to_json(r.tests[0].operand), "label": r.label}
                        for r in band.rules]
        return doc | {"else": band.default}
    if band.kind == "flags":
        choices: list[dict] = []
        for r in band.rules:
            if choices and choices[-1]["label"] == r.label:
                choices[-1]["columns"].append(r.tests[0].input.name)
            else:
                choices.append({"label": r.label, "columns": [r.tests[0].input.name]})
        return {"kind": "flags", "choices": choices, "else": band.default}
    return {"kind": "rules", "rules": [{"label": r.label, "all": [test_to_json(t) for t in r.tests]}
                                       for r in band.rules], "else": band.default}


def learned_from_json(doc, where) -> LearnedRule:
    kind = _need(doc, "kind", (str,), where)
    names = tuple(_name(n, "a learned threshold name", where) for n in _list(doc, "names", where))
    x = input_from_json(_need(doc, "input", (dict,), where), where)
    if kind == "scale":
        small, large = ([_number({"v": v}, "v", where) for v in _list(doc, key, where)] for key in ("small", "large"))
        parameter = doc.get("parameter")
        if parameter not in (None, "dsold_thresholds"):
            raise SchemaError(f"{where}: parameter {parameter!r} is not a fit parameter (only dsold_thresholds)")
        return ScaleRule(names, x, _number(doc, "below", where), tuple(small), tuple(large), parameter)
    if kind == "quantiles":
        probs = tuple(_number({"p": p}, "p", where) for p in _list(doc, "probs", where))
        min_rows = _number(doc, "min_rows", where)
        subset = doc.get("subset")
        return QuantileRule(names, x, probs, int(min_rows),
                            None if subset is None else _name(subset, "subset name", where),
                            _number(doc, "empty", where, 0.0))
    raise SchemaError(f"{where}: learned kind {kind!r} is not 'scale' or 'quantiles'")


def learned_to_json(rule: LearnedRule) -> dict:
    if isinstance(rule, ScaleRule):
        return {"kind": "scale", "names": list(rule.names), "input": input_to_json(rule.input),
                "below": rule.below, "small": list(rule.small), "large": list(rule.large),
                **({"parameter": rule.parameter} if rule.parameter else {})}
    return {"kind": "quantiles", "names": list(rule.names), "input": input_to_json(rule.input),
            "probs": list(rule.probs), "min_rows": rule.min_rows,
            **({"subset": rule.subset} if rule.subset else {}), **({"empty": rule.empty} if rule.empty else {})}


def schema_to_rows(schema: BandSchema) -> tuple[dict, list[dict]]:
    """(schema row, band rows in position order) as ``ml.woe_anchor_band_schemas``/``_bands`` hold them."""
    head = {"version": schema.version, "description": schema.description,
            "subsets": {k: test_to_json(t) for k, t in schema.subsets.items()},
            "learned": [learned_to_json(r) for r in schema.learning]}
    rows = [{"position": i + 1, "band_name": b.name, "column_name": b.column, "subset": b.subset,
             "rule": band_to_rule(b)} for i, b in enumerate(schema.bands)]
    return head, rows


def schema_from_rows(head: dict, rows: list[dict]) -> tuple[BandSchema | None, list[tuple[str | None, str]]]:
    """Parse and check a schema; returns (schema or None, [(band name or None, problem), ...])."""
    problems: list[tuple[str | None, str]] = []
    subsets, learning, parsed = {}, [], []
    subset_docs = head.get("subsets") or {}
    if not isinstance(subset_docs, dict):
        problems.append((None, "subsets must be a JSON object of name -> test"))
        subset_docs = {}
    for name, doc in subset_docs.items():
        try:
            subsets[_name(name, "subset name", f"subset {name!r}")] = test_from_json(doc, f"subset {name!r}")
        except SchemaError as e:
            problems.append((None, str(e)))
    learned_docs = head.get("learned") or []
    if not isinstance(learned_docs, list):
        problems.append((None, "learned must be a JSON array of threshold rules"))
        learned_docs = []
    for i, doc in enumerate(learned_docs):
        try:
            learning.append(learned_from_json(doc, f"learned rule {i + 1}"))
        except SchemaError as e:
            problems.append((None, str(e)))
    for row in rows:
        try:
            parsed.append(band_from_row(row["band_name"], row["column_name"], row["subset"], row["rule"]))
        except SchemaError as e:
            problems.append((row["band_name"], str(e)))
    schema = BandSchema(head["version"], tuple(parsed), subsets, tuple(learning), head.get("description") or "")
    problems += check(schema)
    return (None if problems else schema), problems


def check(schema: BandSchema) -> list[tuple[str | None, str]]:
    """Problems of a parsed schema that no single row shows: names, references, threshold order."""
    problems: list[tuple[str | None, str]] = []
    if not schema.bands:
        problems.append((None, "the schema has no bands"))
    for name, test in schema.subsets.items():
        # a subset feeds the learned thresholds (quantiles over it): it cannot depend on them
        if isinstance(test.operand, Learned):
            problems.append((None, f"subset {name!r} uses learned threshold {test.operand.name!r}; "
                                   "subsets may compare with numbers and inputs only"))
    views = list(KEY_OUTPUTS) + view_columns(schema)
    for dup in sorted({v[:63] for v in views if [w[:63] for w in views].count(v[:63]) > 1}):
        problems.append((None, f"the live views would have two columns named {dup!r} "
                               "(band output columns, subset names and <column>_score must differ)"))
    for attr, what in (("name", "band name"), ("column", "output column name")):
        values = [getattr(b, attr) for b in schema.bands]
        for dup in sorted({v for v in values if values.count(v) > 1}):
            problems.append((dup if attr == "name" else None, f"duplicate {what} {dup!r}"))
    names = schema.learned_names()
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append((None, f"learned threshold {dup!r} is defined twice"))
    for i, rule in enumerate(schema.learning):
        where = f"learned rule {i + 1}"
        if isinstance(rule, ScaleRule):
            for key in ("small", "large"):
                values = getattr(rule, key)
                if len(values) != len(rule.names):
                    problems.append((None, f"{where}: {key} has {len(values)} values for {len(rule.names)} names"))
                elif any(a >= b for a, b in zip(values, values[1:])):
                    problems.append((None, f"{where}: {key} thresholds are not strictly ascending"))
            if rule.parameter and len(rule.names) != 4:
                problems.append((None, f"{where}: the dsold_thresholds parameter sets exactly 4 names"))
        else:
            if len(rule.probs) != len(rule.names):
                problems.append((None, f"{where}: {len(rule.probs)} probs for {len(rule.names)} names"))
            if any(not 0 <= p <= 1 for p in rule.probs):
                problems.append((None, f"{where}: probs must lie in [0, 1]"))
            elif any(a >= b for a, b in zip(rule.probs, rule.probs[1:])):
                problems.append((None, f"{where}: probs must be strictly ascending"))
            if rule.min_rows < 1:
                problems.append((None, f"{where}: min_rows must be at least 1"))
            if rule.subset is not None and rule.subset not in schema.subsets:
                problems.append((None, f"{where}: unknown subset {rule.subset!r}"))
    for band in schema.bands:
        if band.subset is not None and band.subset not in schema.subsets:
            problems.append((band.name, f"unknown subset {band.subset!r}"))
        for r in band.rules:
            for t in r.tests:
                if isinstance(t.operand, Learned) and t.operand.name not in names:
                    problems.append((band.name, f"unknown learned threshold {t.operand.name!r}"))
        if band.category is None:
            for label in {band.default, band.null_label, *(r.label for r in band.rules)} & set(RESERVED_LABELS):
                problems.append((band.name, f"label {label!r} is reserved for category bands"))
        if band.kind == "ladder":
            problems += [(band.name, p) for p in _ladder_order(band)]
    return problems


def scored_sums(schema: BandSchema) -> list[tuple[Band, str]]:
    """Ladders over a weighted sum, whose sum the live views show too, with that column's name."""
    return [(b, b.column.removesuffix("_band") + "_score") for b in schema.bands
            if b.kind == "ladder" and isinstance(b.rules[0].tests[0].input, WeightedSum)]


def display_order(band: Band) -> tuple[str, ...]:
    """A band's labels as people read them: the NULL label first, then a ladder from its lowest
    input to its highest (a ladder whose first step is ``>`` or ``>=`` tests from the top, so its
    default is the lowest), other kinds in the order their rule tests them."""
    null = (band.null_label,) if band.null_label else ()
    rest = tuple(label for label in band.labels if label not in null)
    if band.kind == "ladder" and band.rules and band.rules[0].tests[0].op in (">", ">="):
        rest = tuple(reversed(rest))
    return null + rest


def view_columns(schema: BandSchema) -> list[str]:
    """The live bands view's columns after its keys: band outputs, subsets, weighted-sum scores."""
    return [b.column for b in schema.bands] + list(schema.subsets) + [name for _, name in scored_sums(schema)]


def _ladder_order(band: Band) -> list[str]:
    """Constant thresholds of a one-operator ladder must leave every label reachable."""
    ops = {r.tests[0].op for r in band.rules}
    values = [r.tests[0].operand for r in band.rules]
    if len(ops) != 1 or not all(isinstance(v, (int, float)) for v in values) or "=" in ops:
        return []
    descending = ops <= {">=", ">"}
    pairs = list(zip(values, values[1:]))
    if any((a <= b) if descending else (a >= b) for a, b in pairs):
        order = "descending" if descending else "ascending"
        return [f"thresholds {values} must be strictly {order} for {ops.pop()!r} (later steps are unreachable)"]
    return []
