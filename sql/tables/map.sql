-- The learned WOE of every band value, per fit of a model.
CREATE TABLE ml.woe_anchor_map_v1 (
    model_key   text NOT NULL REFERENCES ml.woe_anchor_model_registry_v1 (model_key) ON DELETE CASCADE,
    fold_id     int CHECK (fold_id >= 0),
    band_name   text NOT NULL,
    band_value  text NOT NULL,
    woe         float8 NOT NULL,
    sum_w_pos   float8 NOT NULL,
    sum_w_neg   float8 NOT NULL,
    n_rows      bigint,  -- learned rows with this value (NULL for models imported from the trainer)
    UNIQUE NULLS NOT DISTINCT (model_key, fold_id, band_name, band_value)
);

COMMENT ON TABLE ml.woe_anchor_map_v1 IS
    'woe_anchor: WOE per band value (fold_id NULL = final mapping used for inference)';
