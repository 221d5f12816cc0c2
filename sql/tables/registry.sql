-- Model ids name score partitions; a sequence so the fit can take one before it writes.
CREATE SEQUENCE ml.woe_anchor_model_id_seq AS bigint;

-- One row per fitted model: its parameters, learned scalars and audit trail.
CREATE TABLE ml.woe_anchor_model_registry_v1 (
    model_key             text PRIMARY KEY
                          CHECK (length(model_key) BETWEEN 1 AND 128 AND model_key !~ '[[:cntrl:]]'),
    -- stable surrogate used to name the model's score partition, never reused
    model_id              bigint NOT NULL UNIQUE DEFAULT nextval('ml.woe_anchor_model_id_seq'),
    train_cutoff_ts       timestamptz NOT NULL,
    half_life_days        float8,
    eps                   float8 NOT NULL CHECK (eps > 0),
    n_folds               int NOT NULL CHECK (n_folds >= 1),
    band_schema_version   int NOT NULL DEFAULT 1 REFERENCES ml.woe_anchor_band_schemas (version),
    -- the schema exactly as the fit read it (ml.woe_anchor_band_schema): what scoring compiles
    band_schema           jsonb NOT NULL,
    code_sha256           text NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT now(),
    is_active             boolean NOT NULL DEFAULT false,
    base_rate             float8 NOT NULL,
    base_logit            float8 NOT NULL,
    -- SPEC.md 8: schema 1's dsold thresholds (NULL when the schema learns none of that name)
    dsold_t1              float8,
    dsold_t2              float8,
    dsold_t3              float8,
    dsold_t4              float8,
    -- what an auditor needs to reproduce and judge the fit
    slow_threshold_hours  float8 NOT NULL,
    min_duration_hours    float8 NOT NULL,
    oof                   boolean NOT NULL,
    weight_ref_ts         timestamptz NOT NULL,
    dsold_source          text CHECK (dsold_source IN ('given', 'learned_small_scale', 'learned_large_scale')),
    n_train_sold          bigint NOT NULL,
    n_learned             bigint NOT NULL,
    n_learned_has_assets  bigint,
    n_days                int NOT NULL,
    n_folds_with_rows     int NOT NULL,
    n_scored_oof          bigint NOT NULL,
    source_relation       text NOT NULL,
    fitted_by             name NOT NULL DEFAULT current_user,
    extension_version     text NOT NULL,
    parameters            jsonb NOT NULL,
    timings_ms            jsonb NOT NULL,
    -- quality at fit time: OOF vs in-sample AUC on TRAIN SOLD shows the leakage OOF avoids
    oof_auc               float8,
    oof_logloss           float8,
    insample_auc          float8,
    insample_logloss      float8,
    eval_auc              float8,
    eval_logloss          float8,
    n_eval                bigint,
    band_quality          jsonb,
    -- rows per equal-width logit bin of each scored set: calibration and score distribution
    score_bins            jsonb,
    CHECK (dsold_t1 <= dsold_t2 AND dsold_t2 <= dsold_t3 AND dsold_t3 <= dsold_t4)
);

-- The schema itself guarantees at most one active model.
CREATE UNIQUE INDEX woe_anchor_model_registry_v1_one_active
    ON ml.woe_anchor_model_registry_v1 ((true)) WHERE is_active;

COMMENT ON TABLE ml.woe_anchor_model_registry_v1 IS
    'woe_anchor: one row per fitted WOE anchor model; at most one row has is_active';
