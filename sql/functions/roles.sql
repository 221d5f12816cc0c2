-- The routines each kind of role may call (docs/security.md, "Roles"). The internals a definer
-- entry point calls as the extension's owner (caller, set_active,
-- delete_models, cron, the import) are granted to no one.
CREATE FUNCTION woe_anchor_internal.routines(kind text) RETURNS text[]
LANGUAGE sql IMMUTABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT CASE kind
    WHEN 'reader' THEN ARRAY[
        'load_package', 'reraise', 'woe_anchor_score', 'score_sql',
        'woe_anchor_training_features', 'training_features_sql', 'end_shard_reads',
        'woe_anchor_stored_scores', 'stored_scores_sql', 'woe_anchor_reasons', 'reasons_sql',
        'woe_anchor_compare', 'compare', 'serves', 'model_unchanged', 'score_partition_name', 'woe_anchor_drift', 'drift', 'woe_anchor_realized', 'realized',
        'dblink',
        'woe_anchor_quality', 'woe_anchor_models', 'woe_anchor_assert_ready', 'woe_anchor_band_schema',
        'woe_anchor_band_schema_problems', 'band_schema_problems', 'woe_anchor_model_bands',
        'model_bands']
    WHEN 'trainer' THEN ARRAY[
        'fit_woe_anchor', 'fit', 'open_staging', 'persist', 'ticket', 'stamp_ticket',
        'woe_anchor_activate', 'activate', 'woe_anchor_rollback', 'rollback', 'woe_anchor_annotate', 'annotate',
        'woe_anchor_monitor', 'monitor', 'record_monitoring',
        'woe_anchor_drop_model', 'drop_model',
        'woe_anchor_prune', 'prune', 'drop_shard_table_of', 'drop_shard_table',
        'woe_anchor_copy_band_schema', 'woe_anchor_create_band_schema', 'woe_anchor_set_band', 'woe_anchor_drop_band',
        'woe_anchor_drop_band_schema', 'edit_band_schema', 'band_schema_guard',
        'may_manage', 'require_fittable',
        'schedule_woe_anchor_fit', 'check_fit_parameters', 'schedule', 'unschedule_woe_anchor_fit', 'unschedule']
END
$$;

-- Grants the two usual roles their rights: a reader may read models and score with them, a
-- trainer may also fit and manage its own models. Either may be NULL. Nothing here lets a role
-- write an artifact table or create an object the extension later acts on: trainers write
-- through the definer entry points only. Call it again after creating the live views.
CREATE FUNCTION ml.woe_anchor_grant(trainer regrole DEFAULT NULL, reader regrole DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who regrole;
    routine regprocedure;
    view regclass;
BEGIN
    IF trainer IS NULL AND reader IS NULL THEN
        RAISE EXCEPTION 'name a trainer or a reader' USING ERRCODE = 'null_value_not_allowed',
            HINT = 'SELECT ml.woe_anchor_grant(trainer => ''a_role'') or ml.woe_anchor_grant(reader => ''a_role'').';
    END IF;
    FOREACH who IN ARRAY array_remove(ARRAY[trainer, reader], NULL) LOOP
        IF NOT EXISTS (SELECT FROM pg_roles AS r WHERE r.oid = who) THEN  -- a regrole of a dropped role
            RAISE EXCEPTION 'role with OID % does not exist', who::oid USING ERRCODE = 'undefined_object';
        END IF;
        EXECUTE format('GRANT USAGE ON SCHEMA ml, woe_anchor_internal TO %s', who);
        EXECUTE format('GRANT SELECT ON ml.woe_anchor_model_registry_v1, ml.woe_anchor_cuts_v1, '
                       'ml.woe_anchor_map_v1, ml.woe_anchor_scores_v1, ml.woe_anchor_shard_scores, '
                       'ml.woe_anchor_band_schemas, ml.woe_anchor_bands, ml.woe_anchor_views, ml.woe_anchor_activations, '
                       'ml.woe_anchor_policy, ml.woe_anchor_model_notes, ml.woe_anchor_realized, ml.woe_anchor_alerts, '
                       'ml.woe_anchor_psi, '
                       'ml.woe_anchor_activation_hooks TO %s', who);
        FOR routine IN SELECT p.oid FROM pg_proc AS p
                       WHERE p.pronamespace IN ('ml'::regnamespace, 'woe_anchor_internal'::regnamespace)
                         AND p.proname = ANY (woe_anchor_internal.routines('reader')) LOOP
            EXECUTE format('GRANT EXECUTE ON ROUTINE %s TO %s', routine, who);
        END LOOP;
        -- the views woe_anchor made, in schemas only a superuser owns (its names stay its own there)
        FOR view IN SELECT c.oid FROM ml.woe_anchor_views AS v
                    JOIN pg_class AS c ON c.oid = CASE WHEN v.kind <> 'function' THEN to_regclass(v.view_name) END
                    JOIN pg_namespace AS n ON n.oid = c.relnamespace
                    WHERE woe_anchor_internal.superusers_schema(n.nspname) LOOP
            EXECUTE format('GRANT SELECT ON %s TO %s', view, who);
        END LOOP;
        -- and the per-row scoring functions it made (in ml)
        FOR routine IN SELECT f.routine FROM woe_anchor_internal.row_functions() AS f LOOP
            EXECUTE format('GRANT EXECUTE ON ROUTINE %s TO %s', routine, who);
        END LOOP;
    END LOOP;
    IF trainer IS NOT NULL THEN
        -- a ticket says who calls a definer entry point (functions/callers.sql)
        EXECUTE format('GRANT INSERT ON ml._woe_anchor_callers TO %s', trainer);
        FOR routine IN SELECT p.oid FROM pg_proc AS p
                       WHERE p.pronamespace IN ('ml'::regnamespace, 'woe_anchor_internal'::regnamespace)
                         AND p.proname = ANY (woe_anchor_internal.routines('trainer')) LOOP
            EXECUTE format('GRANT EXECUTE ON ROUTINE %s TO %s', routine, trainer);
        END LOOP;
    END IF;
END
$$;

-- Takes back every right on the extension's objects that the helper above (or an older version's)
-- granted a role.
CREATE FUNCTION ml.woe_anchor_revoke(role regrole)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    routine regprocedure;
    relation regclass;
BEGIN
    IF role IS NULL THEN
        RAISE EXCEPTION 'role must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    ELSIF NOT EXISTS (SELECT FROM pg_roles AS r WHERE r.oid = role) THEN
        RAISE EXCEPTION 'role with OID % does not exist', role::oid USING ERRCODE = 'undefined_object';
    END IF;
    FOR routine IN SELECT d.objid FROM pg_depend AS d JOIN pg_extension AS e ON e.oid = d.refobjid
                   WHERE e.extname = 'woe_anchor' AND d.deptype = 'e' AND d.classid = 'pg_proc'::regclass
                   UNION
                   SELECT f.routine FROM woe_anchor_internal.row_functions() AS f LOOP
        EXECUTE format('REVOKE ALL ON ROUTINE %s FROM %s', routine, role);
    END LOOP;
    -- the extension's relations, and the views it made elsewhere (source views)
    FOR relation IN SELECT c.oid FROM pg_class AS c
                    WHERE (c.relnamespace IN ('ml'::regnamespace, 'woe_anchor_scores'::regnamespace)
                           OR c.oid IN (SELECT to_regclass(v.view_name) FROM ml.woe_anchor_views AS v
                                        WHERE v.kind <> 'function'))
                      AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
                      AND EXISTS (SELECT FROM aclexplode(c.relacl) AS a WHERE a.grantee = role) LOOP
        EXECUTE format('REVOKE ALL ON %s FROM %s', relation, role);
    END LOOP;
    -- USAGE on ml stays: the schema may hold the role's own objects too
    EXECUTE format('REVOKE ALL ON SCHEMA woe_anchor_scores, woe_anchor_internal FROM %s', role);
END
$$;

COMMENT ON FUNCTION woe_anchor_internal.routines(text) IS 'woe_anchor internal: the routines a reader or a trainer may call';
COMMENT ON FUNCTION ml.woe_anchor_grant(regrole, regrole) IS
    'Grant a trainer role (fit and manage its models) and/or a reader role (read and score) their rights';
COMMENT ON FUNCTION ml.woe_anchor_revoke(regrole) IS 'Take back every woe_anchor right of a role';
