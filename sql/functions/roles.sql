-- Grants the two usual roles their rights: a reader may read models and score with them, a
-- trainer may also fit and manage them. Either may be NULL. Creating the live views stays with
-- an administrator (it needs CREATE on ml); call this again afterwards to grant SELECT on them.
CREATE FUNCTION ml.woe_anchor_grant(trainer regrole DEFAULT NULL, reader regrole DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who regrole;
    routine regprocedure;
    view regclass;
    reading text[] := ARRAY['_woe_anchor_load', '_woe_anchor_reraise', 'woe_anchor_score', '_woe_anchor_score_sql',
                            'woe_anchor_training_features', '_woe_anchor_training_features_sql',
                            'woe_anchor_quality', 'woe_anchor_models', 'woe_anchor_assert_ready',
                            'woe_anchor_band_schema', 'woe_anchor_band_schema_problems',
                            '_woe_anchor_band_schema_problems', 'woe_anchor_model_bands', '_woe_anchor_model_bands'];
    training text[] := ARRAY['fit_woe_anchor', '_fit_woe_anchor', '_woe_anchor_attach_scores', 'woe_anchor_activate',
                             'woe_anchor_drop_model', 'woe_anchor_prune', 'woe_anchor_copy_band_schema',
                             '_woe_anchor_drop_shard_scores', '_woe_anchor_shard_score_tables',
                             '_woe_anchor_drop_shard_table', 'schedule_woe_anchor_fit', 'unschedule_woe_anchor_fit',
                             '_woe_anchor_cron', '_woe_anchor_dblink',
                             '_woe_anchor_band_schema_guard'];
BEGIN
    FOREACH who IN ARRAY array_remove(ARRAY[trainer, reader], NULL) LOOP
        EXECUTE format('GRANT USAGE ON SCHEMA ml TO %s', who);
        EXECUTE format('GRANT SELECT ON ml.woe_anchor_model_registry_v1, ml.woe_anchor_cuts_v1, '
                       'ml.woe_anchor_map_v1, ml.woe_anchor_scores_v1, ml.woe_anchor_band_schemas, '
                       'ml.woe_anchor_bands TO %s', who);
        FOR routine IN SELECT p.oid FROM pg_proc AS p
                       WHERE p.pronamespace = 'ml'::regnamespace AND p.proname = ANY (reading) LOOP
            EXECUTE format('GRANT EXECUTE ON ROUTINE %s TO %s', routine, who);
        END LOOP;
        FOR view IN SELECT c.oid FROM pg_class AS c
                    WHERE c.relnamespace = 'ml'::regnamespace AND c.relname IN
                          ('v_woe_anchor_bands_live_v1', 'woe_anchor_scores_live_v1', 'woe_anchor_scores_live_train_v') LOOP
            EXECUTE format('GRANT SELECT ON %s TO %s', view, who);
        END LOOP;
    END LOOP;
    IF trainer IS NOT NULL THEN
        EXECUTE format('GRANT INSERT, UPDATE, DELETE ON ml.woe_anchor_model_registry_v1, ml.woe_anchor_cuts_v1, '
                       'ml.woe_anchor_map_v1, ml.woe_anchor_band_schemas, ml.woe_anchor_bands TO %s', trainer);
        EXECUTE format('GRANT USAGE, UPDATE ON SEQUENCE ml.woe_anchor_model_id_seq TO %s', trainer);
        EXECUTE format('GRANT USAGE, CREATE ON SCHEMA woe_anchor_scores TO %s', trainer);
        FOR routine IN SELECT p.oid FROM pg_proc AS p
                       WHERE p.pronamespace = 'ml'::regnamespace AND p.proname = ANY (training) LOOP
            EXECUTE format('GRANT EXECUTE ON ROUTINE %s TO %s', routine, trainer);
        END LOOP;
    END IF;
END
$$;

COMMENT ON FUNCTION ml.woe_anchor_grant(regrole, regrole) IS
    'Grant a trainer role (fit and manage models) and/or a reader role (read and score) their rights';
