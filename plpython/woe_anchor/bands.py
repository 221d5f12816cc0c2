"""Band schemas as data: what each band reads and how it maps inputs to labels.

The engine never hard-wires a band: it compiles these descriptions to SQL
(``sqlgen``) and learns WOE per label. Schema 1 below is SPEC.md section 5.
"""
from __future__ import annotations

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
    transform: str = "identity"  # identity | ln1p | one_minus


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
class Band:
    name: str                 # band_name in the map, e.g. 'dsold'
    column: str               # output column name, e.g. 'dsold_band'
    rules: tuple[Rule, ...]   # checked in order
    default: str              # label when no rule matches
    null_input: Input | None = None  # when given, NULL here yields null_label first
    null_label: str | None = None
    subset: str | None = None  # 'has_assets': band exists only on that subset

    @property
    def labels(self) -> tuple[str, ...]:
        """Every label this band can produce; a label's code is its index here."""
        out: list[str] = []
        for label in ([self.null_label] if self.null_label else []) + \
                [r.label for r in self.rules] + [self.default]:
            if label not in out:
                out.append(label)
        return tuple(out)


@dataclass(frozen=True)
class BandSchema:
    version: int
    bands: tuple[Band, ...]
    subsets: dict = field(default_factory=dict)  # subset name -> Test that defines it

    @property
    def columns(self) -> tuple[str, ...]:
        """Every source column any band, subset or weighted sum reads."""
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
        return tuple(seen)

    def learned_names(self) -> tuple[str, ...]:
        names: list[str] = []
        for b in self.bands:
            for r in b.rules:
                for t in r.tests:
                    if isinstance(t.operand, Learned) and t.operand.name not in names:
                        names.append(t.operand.name)
        return tuple(names)


# ---------------------------------------------------------------- constructors


def ladder(name, column, input_, steps, default, null_label=None, subset=None) -> Band:
    """A numeric ladder: steps are (op, threshold, label), first match wins."""
    rules = tuple(Rule(label, (Test(input_, op, thr),)) for op, thr, label in steps)
    return Band(name, column, rules, default,
                null_input=input_ if null_label else None, null_label=null_label,
                subset=subset)


def flags(name, column, choices, default, subset=None) -> Band:
    """The first label whose 0/1 inputs has one equal to 1 wins."""
    rules = tuple(Rule(label, (Test(Column(c), "=", 1.0),))
                  for label, cols in choices for c in cols)
    return Band(name, column, rules, default, subset=subset)


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
    subsets={"has_assets": Test(Column("image_count"), ">", 0.0)},
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

# Inputs whose distribution sets learned thresholds (SPEC.md section 5).
DSOLD_INPUT = "delta_vs_sold_median_30d"
PRESENTATION_SCORE = _PRESENTATION
BOOLEAN_OK = ("box_present", "receipt_present", "ai_ship_can", "ai_ship_pickup",
              "ai_pickup_only_bin", "ai_sale_mode_firm", "ai_sale_mode_bids",
              "ai_sale_mode_obo")

SCHEMAS = {1: SCHEMA_1}
