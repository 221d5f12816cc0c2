-- Makes one model the only active one; activations (and fits) serialize on the registry lock.
CREATE FUNCTION ml.woe_anchor_activate(model_key text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    LOCK TABLE ml.woe_anchor_model_registry_v1 IN SHARE ROW EXCLUSIVE MODE;
    IF NOT EXISTS (SELECT FROM ml.woe_anchor_model_registry_v1 AS r
                   WHERE r.model_key = woe_anchor_activate.model_key) THEN
        RAISE EXCEPTION 'model % does not exist', quote_literal(woe_anchor_activate.model_key)
            USING ERRCODE = 'no_data_found', HINT = 'List models with ml.woe_anchor_models().';
    END IF;
    -- two statements: the one-active index is checked row by row
    UPDATE ml.woe_anchor_model_registry_v1 AS r SET is_active = false
    WHERE r.is_active AND r.model_key <> woe_anchor_activate.model_key;
    UPDATE ml.woe_anchor_model_registry_v1 AS r SET is_active = true
    WHERE r.model_key = woe_anchor_activate.model_key AND NOT r.is_active;
END
$$;

-- Removes a model and all its artifacts (its score partition is dropped, not emptied).
CREATE FUNCTION ml.woe_anchor_drop_model(model_key text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ml._woe_anchor_drop_shard_scores(woe_anchor_drop_model.model_key);
    DELETE FROM ml.woe_anchor_model_registry_v1 AS r WHERE r.model_key = woe_anchor_drop_model.model_key;
    RETURN FOUND;
END
$$;

-- Keeps the newest `keep` models and the active one; returns the keys it dropped.
CREATE FUNCTION ml.woe_anchor_prune(keep int)
RETURNS SETOF text
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF keep IS NULL OR keep < 0 THEN
        RAISE EXCEPTION 'keep must be 0 or more, got %', keep USING ERRCODE = 'invalid_parameter_value';
    END IF;
    LOCK TABLE ml.woe_anchor_model_registry_v1 IN SHARE ROW EXCLUSIVE MODE;
    PERFORM ml._woe_anchor_drop_shard_scores(r.model_key)
    FROM ml.woe_anchor_model_registry_v1 AS r
    WHERE NOT r.is_active
      AND r.model_key NOT IN (SELECT n.model_key FROM ml.woe_anchor_model_registry_v1 AS n
                              ORDER BY n.created_at DESC, n.model_id DESC LIMIT keep);
    RETURN QUERY
    DELETE FROM ml.woe_anchor_model_registry_v1 AS r
    WHERE NOT r.is_active
      AND r.model_key NOT IN (SELECT n.model_key FROM ml.woe_anchor_model_registry_v1 AS n
                              ORDER BY n.created_at DESC, n.model_id DESC LIMIT keep)
    RETURNING r.model_key;
END
$$;

-- What is stored: one row per model with its size on disk.
CREATE FUNCTION ml.woe_anchor_models()
RETURNS TABLE (model_key text, is_active boolean, created_at timestamptz, train_cutoff_ts timestamptz,
               n_folds int, n_train_sold bigint, base_rate float8, map_rows bigint, score_rows bigint,
               scores_bytes bigint, source_relation text)
LANGUAGE sql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.model_key, r.is_active, r.created_at, r.train_cutoff_ts, r.n_folds, r.n_train_sold, r.base_rate,
           (SELECT count(*) FROM ml.woe_anchor_map_v1 AS m WHERE m.model_key = r.model_key),
           r.n_train_sold,  -- the partition holds exactly one row per TRAIN SOLD row
           pg_total_relation_size(to_regclass(format('woe_anchor_scores.%I', 'woe_anchor_scores_v1_m' || r.model_id))),
           r.source_relation
    FROM ml.woe_anchor_model_registry_v1 AS r
    ORDER BY r.created_at DESC, r.model_id DESC
$$;

COMMENT ON FUNCTION ml.woe_anchor_activate(text) IS 'Make this WOE anchor model the only active one';
COMMENT ON FUNCTION ml.woe_anchor_drop_model(text) IS 'Drop a WOE anchor model and all its artifacts; true if it existed';
COMMENT ON FUNCTION ml.woe_anchor_prune(int) IS 'Drop all but the newest N WOE anchor models, never the active one';
COMMENT ON FUNCTION ml.woe_anchor_models() IS 'Stored WOE anchor models, newest first, with their sizes';

-- Quality recorded at fit time: AUC and log loss (OOF, in-sample, eval), then per band IV and fold stability.
CREATE FUNCTION ml.woe_anchor_quality(model_key text DEFAULT NULL)
RETURNS TABLE (metric text, band_name text, value float8)
LANGUAGE sql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH m AS (
        SELECT r.* FROM ml.woe_anchor_model_registry_v1 AS r
        WHERE CASE WHEN woe_anchor_quality.model_key IS NULL THEN r.is_active
                   ELSE r.model_key = woe_anchor_quality.model_key END)
    SELECT v.metric, NULL::text, v.value
    FROM m CROSS JOIN LATERAL (VALUES (1, 'oof_auc', m.oof_auc), (2, 'insample_auc', m.insample_auc),
                                      (3, 'eval_auc', m.eval_auc), (4, 'oof_logloss', m.oof_logloss),
                                      (5, 'insample_logloss', m.insample_logloss),
                                      (6, 'eval_logloss', m.eval_logloss),
                                      (7, 'n_eval', m.n_eval::float8)) AS v(ord, metric, value)
    UNION ALL
    SELECT s.key, b.key, (s.value #>> '{}')::float8
    FROM m CROSS JOIN LATERAL jsonb_each(m.band_quality) AS b
    CROSS JOIN LATERAL jsonb_each(b.value) AS s
$$;

COMMENT ON FUNCTION ml.woe_anchor_quality(text) IS 'Quality of a WOE anchor model (default: the active one) recorded at fit time';
