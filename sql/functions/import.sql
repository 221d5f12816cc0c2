-- The key and constraints of a model's score table, as a fit adds them (passes.constrain_scores_sql).
CREATE FUNCTION ml._woe_anchor_constrain_scores_sql(score_table text, model_key text) RETURNS text
LANGUAGE plpython3u STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $woe_anchor_py$
@LOAD_PACKAGE@
return woe_anchor.passes.constrain_scores_sql(score_table, model_key)
$woe_anchor_py$;

-- Adopts the models of the Python trainer, whose tables (SPEC.md section 8 columns) were moved
-- out of the way into legacy_schema before CREATE EXTENSION (README, "Migrating from the
-- Python trainer"). Keys, maps, cuts, scores and the active pointer are kept; what the trainer
-- never recorded is derived where it can be (per-fit base rates and learned-row counts from the
-- map's sums) and marked as imported where it cannot (weight_ref_ts, source_relation).
CREATE FUNCTION ml.woe_anchor_import_trainer(legacy_schema name)
RETURNS SETOF text
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    legacy text := quote_ident(legacy_schema);
    m record;
    new_id bigint;
    part text;
    active text;
BEGIN
    -- it writes artifacts and partitions directly: the extension's owner or a superuser only
    IF NOT (SELECT r.rolsuper FROM pg_roles AS r WHERE r.rolname = current_user) THEN
        RAISE EXCEPTION 'importing the trainer''s models needs a superuser' USING ERRCODE = 'insufficient_privilege';
    END IF;
    LOCK TABLE ml.woe_anchor_model_registry_v1 IN SHARE ROW EXCLUSIVE MODE;
    FOR m IN EXECUTE format('SELECT r.*, (SELECT count(*) FROM %1$s.woe_anchor_scores_v1 AS s '
                            'WHERE s.model_key = r.model_key) AS n_scores, '
                            '(SELECT count(DISTINCT (s.t0 AT TIME ZONE ''UTC'')::date) FROM %1$s.woe_anchor_scores_v1 AS s '
                            'WHERE s.model_key = r.model_key) AS n_days, '
                            '(SELECT count(DISTINCT s.fold_id) FROM %1$s.woe_anchor_scores_v1 AS s '
                            'WHERE s.model_key = r.model_key) AS n_folds_seen, '
                            '(SELECT count(*) FROM %1$s.woe_anchor_scores_v1 AS s '
                            'WHERE s.model_key = r.model_key AND s.is_oof) AS n_oof '
                            'FROM %1$s.woe_anchor_model_registry_v1 AS r ORDER BY r.created_at, r.model_key', legacy) LOOP
        INSERT INTO ml.woe_anchor_model_registry_v1 (
            model_key, train_cutoff_ts, half_life_days, eps, n_folds, band_schema_version, band_schema,
            code_sha256, created_at, base_rate, base_logit, dsold_t1, dsold_t2, dsold_t3, dsold_t4,
            slow_threshold_hours, min_duration_hours, oof, weight_ref_ts, dsold_source, n_train_sold, n_learned,
            n_days, n_folds_with_rows, n_scored_oof, source_relation, extension_version, parameters, timings_ms)
        SELECT m.model_key, m.train_cutoff_ts, m.half_life_days, m.eps, m.n_folds, 1, ml.woe_anchor_band_schema(1),
               m.code_sha256, m.created_at, m.base_rate, m.base_logit, m.dsold_t1, m.dsold_t2, m.dsold_t3, m.dsold_t4,
               504, 48, m.n_oof > 0, m.train_cutoff_ts, 'given', m.n_scores, 0, m.n_days, m.n_folds_seen,
               m.n_oof, 'imported from ' || legacy, 'imported',
               jsonb_build_object('imported_from', legacy_schema), '{}'::jsonb
        RETURNING model_id INTO new_id;
        EXECUTE format('INSERT INTO ml.woe_anchor_map_v1 (model_key, fold_id, band_name, band_value, woe, sum_w_pos, '
                       'sum_w_neg) SELECT model_key, fold_id, band_name, band_value, woe, sum_w_pos, sum_w_neg '
                       'FROM %s.woe_anchor_map_v1 WHERE model_key = $1', legacy) USING m.model_key;
        -- every learned row has a dsold value: that band's sums are each fit's totals
        EXECUTE format('INSERT INTO ml.woe_anchor_cuts_v1 (model_key, fold_id, thresholds, c1, c2, base_rate, '
                       'base_logit, n_learned) '
                       'SELECT c.model_key, c.fold_id, jsonb_build_object(''dsold_t1'', $2, ''dsold_t2'', $3, '
                       '''dsold_t3'', $4, ''dsold_t4'', $5, ''c1'', c.c1, ''c2'', c.c2), c.c1, c.c2, '
                       'coalesce(t.pos / nullif(t.pos + t.neg, 0), 0.5), '
                       'ln(greatest(least(coalesce(t.pos / nullif(t.pos + t.neg, 0), 0.5), 1 - 1e-12), 1e-12) '
                       '   / (1 - greatest(least(coalesce(t.pos / nullif(t.pos + t.neg, 0), 0.5), 1 - 1e-12), 1e-12))), '
                       'round(coalesce(t.pos + t.neg, 0))::bigint '
                       'FROM %s.woe_anchor_cuts_v1 AS c LEFT JOIN LATERAL ('
                       '  SELECT sum(p.sum_w_pos) AS pos, sum(p.sum_w_neg) AS neg FROM ml.woe_anchor_map_v1 AS p '
                       '  WHERE p.model_key = c.model_key AND p.fold_id IS NOT DISTINCT FROM c.fold_id '
                       '    AND p.band_name = ''dsold'') AS t ON true WHERE c.model_key = $1', legacy)
            USING m.model_key, m.dsold_t1, m.dsold_t2, m.dsold_t3, m.dsold_t4;
        UPDATE ml.woe_anchor_model_registry_v1 SET n_learned = c.n_learned
        FROM ml.woe_anchor_cuts_v1 AS c
        WHERE c.model_key = m.model_key AND c.fold_id IS NULL
          AND ml.woe_anchor_model_registry_v1.model_key = m.model_key;
        part := 'woe_anchor_scores.' || quote_ident('woe_anchor_scores_v1_m' || new_id);
        EXECUTE format('CREATE TABLE %s AS SELECT model_key::text AS model_key, generation::int AS generation, '
                       'listing_id::bigint AS listing_id, t0, fold_id::int AS fold_id, is_oof, '
                       'woe_logit::float8 AS woe_logit, woe_p::float8 AS woe_p '
                       'FROM %s.woe_anchor_scores_v1 WHERE model_key = %L', part, legacy, m.model_key);
        EXECUTE ml._woe_anchor_constrain_scores_sql(part, m.model_key);
        EXECUTE format('ALTER TABLE %s OWNER TO %I', part, (SELECT pg_get_userbyid(e.extowner) FROM pg_extension AS e
                                                            WHERE e.extname = 'woe_anchor'));
        EXECUTE format('ALTER TABLE ml.woe_anchor_scores_v1 ATTACH PARTITION %s FOR VALUES IN (%L)', part, m.model_key);
        IF m.is_active THEN
            active := m.model_key;
        END IF;
        RETURN NEXT m.model_key;
    END LOOP;
    IF active IS NOT NULL THEN
        PERFORM ml._woe_anchor_set_active(active);
    END IF;
END
$$;

COMMENT ON FUNCTION ml._woe_anchor_constrain_scores_sql(text, text) IS
    'woe_anchor internal: the ALTER TABLE that keys and constrains a model''s score table';
COMMENT ON FUNCTION ml.woe_anchor_import_trainer(name) IS
    'Import the Python trainer''s models (tables moved to legacy_schema) with their keys, artifacts and active pointer';
