-- One row per fit of a model (final: fold_id NULL; one per fold with rows): cuts and fit scalars.
CREATE TABLE ml.woe_anchor_cuts_v1 (
    model_key   text NOT NULL REFERENCES ml.woe_anchor_model_registry_v1 (model_key) ON DELETE CASCADE,
    fold_id     int CHECK (fold_id >= 0),
    -- every learned threshold of the model's band schema, name -> number (shared by its fits)
    thresholds  jsonb NOT NULL CHECK (jsonb_typeof(thresholds) = 'object'),
    -- SPEC.md 8: schema 1's presentation cuts (NULL when the schema learns none of that name)
    c1          float8,
    c2          float8,
    base_rate   float8 NOT NULL,
    base_logit  float8 NOT NULL,
    n_learned   bigint NOT NULL,
    -- NULLS NOT DISTINCT: the final row (fold_id NULL) is unique per model too
    UNIQUE NULLS NOT DISTINCT (model_key, fold_id)
);

COMMENT ON TABLE ml.woe_anchor_cuts_v1 IS
    'woe_anchor: learned thresholds and base rate of each fit (fold_id NULL = final mapping)';
