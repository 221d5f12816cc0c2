-- Score partitions live in a schema of their own: trainers get CREATE there, never on ml.
CREATE SCHEMA woe_anchor_scores;
COMMENT ON SCHEMA woe_anchor_scores IS 'woe_anchor: one score partition per model (woe_anchor_scores_v1_m<model_id>)';

-- Row-level TRAIN SOLD scores, one list partition per model: written in bulk, dropped instantly.
-- Tied to the registry by a trigger that drops a model's partition with its registry row
-- (a foreign key would re-check every row at ATTACH and delete row by row).
CREATE TABLE ml.woe_anchor_scores_v1 (
    model_key   text NOT NULL,
    generation  int NOT NULL,
    listing_id  bigint NOT NULL,
    t0          timestamptz NOT NULL,
    fold_id     int CHECK (fold_id >= 0),
    is_oof      boolean NOT NULL,
    woe_logit   float8 NOT NULL,
    woe_p       float8 NOT NULL
) PARTITION BY LIST (model_key);
-- Each model's partition carries PRIMARY KEY (generation, listing_id, t0, model_key): model_key
-- is constant in a partition, so it goes last, where the index build never compares it.
-- The parent declares none: an index inherited from an extension table would be created
-- twice when pg_dump's output is restored (once by ATTACH, once by the dumped constraint).

COMMENT ON TABLE ml.woe_anchor_scores_v1 IS
    'woe_anchor: out-of-fold (or in-sample when OOF is off) scores of every TRAIN SOLD row, partitioned by model';
