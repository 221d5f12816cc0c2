"""What several modules, and the SQL, share: one definition each.

``extension/build.py`` reads this module when it generates the extension
script: the placeholder LEARNING_PARAMETERS in sql/ becomes the parameter list below and
DEFAULT:<name> the default of ``<name>``, so ml.fit_woe_anchor and
ml.schedule_woe_anchor_fit declare the same parameters with the same defaults.
"""

# the artifact tables (docs/contract.md 8) and the live views
REGISTRY = "ml.woe_anchor_model_registry_v1"
CUTS = "ml.woe_anchor_cuts_v1"
MAPS = "ml.woe_anchor_map_v1"
SCORES = "ml.woe_anchor_scores_v1"
SHARD_SCORES = "ml.woe_anchor_shard_scores"
BANDS_VIEW = "ml.v_woe_anchor_bands_live_v1"
SCORES_VIEW = "ml.woe_anchor_scores_live_v1"
TRAIN_VIEW = "ml.woe_anchor_scores_live_train_v"

# docs/contract.md 3: the eval window follows the cutoff, and the default cutoff is the latest finite
# sale less the window's width
EVAL_WINDOW = "interval '168 hours'"
# docs/contract.md 3: the split censored_ge_21d is 21 days, whatever the label threshold of a fit
CENSORED_HOURS = 504
# the longest span back from now a setting may reach (a retention age, a monitor's window): a
# million days (2,700 years) before now is still after the first timestamptz
MAX_DAYS = 1_000_000

# A pass that bands every row of a large window runs its expressions compiled (LLVM JIT, optimized)
# once its planned cost passes this (passes.compiled_pass): the compile takes about 0.3 s on 2 cores
# for schema 1 and repays itself from about 700k rows on (1M rows: realized's statement 0.80 -> 0.66
# s, the fit's read 1.02 -> 0.92 s; 4.6M rows read in chunks by one process, 6.2 -> 4.0 s). Inlining
# costs a parallel pass more to compile than it saves. The scores' write compiles past the same
# cost: its lookups are two-dimensional arrays of (fit, combination), constants the JIT does not
# compile, so what it compiles does not grow with the folds (a CASE branch per fit did: a 20-fold
# fit took 1.9 times a 5-fold one); 4.4M rows: 4.47 -> 3.82 s. The scoring stays interpreted.
COMPILED_PASS_COST = 250000
# What the routines that compile declare (@COMPILED_PASSES@, besides jit = off) and a pass put back:
# the costs above, and no inlining, except in a read known to be large (passes.compiled_pass's
# ``always``: one process reading in chunks), where inlining repays its longer compile (4.6M rows
# read in one process: 4.38 -> 3.91 s).
COMPILED_PASS_SETTINGS = {"jit_above_cost": COMPILED_PASS_COST, "jit_optimize_above_cost": COMPILED_PASS_COST,
                          "jit_inline_above_cost": -1}

# the parameters of how a model learns (docs/contract.md 3-7): name, SQL type, default literal
LEARNING_PARAMETERS = (
    ("n_folds", "int", "5"),
    ("half_life_days", "float8", "150"),
    ("eps", "float8", "0.5"),
    ("slow_threshold_hours", "float8", "504"),   # slow21: 21 days
    ("min_duration_hours", "float8", "48"),      # rows that sold faster are scored, not learned from
    ("dsold_thresholds", "float8[]", "NULL"),
)
FIT_DEFAULTS = {name: default for name, _, default in LEARNING_PARAMETERS} | {"band_schema_version": "1"}

# docs/contract.md 6: the base rate is clamped into [P_CLAMP, 1 - P_CLAMP] before its logit
P_CLAMP = 1e-12

# what an imported trainer model records as its source relation, before the trainer's table
IMPORTED_FROM = "imported from "
