-- Runs the activation hooks when a model becomes the active one, in that transaction: a hook
-- that raises refuses the activation. Activations happen inside the definer entry points, as the
-- extension's owner, in whichever session activates (a trainer's too). So a hook must be SECURITY
-- DEFINER and owned by a role that is not a superuser: it runs with that role's rights, never the
-- owner's, and whatever code the relations it reads carry runs with them too. It must pin a
-- search_path ending with pg_temp, or the activating trainer's temporary tables would be what its
-- unqualified names reach. Checked when it is registered and each time it runs (below).
CREATE FUNCTION woe_anchor_internal.hook_problem(hook regprocedure) RETURNS text
LANGUAGE sql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT CASE
    WHEN p.oid IS NOT NULL AND (p.prokind <> 'f'
         OR NOT (p.pronargs = 0 OR (p.pronargs = 1 AND p.proargtypes[0] = 'text'::regtype)))
        THEN 'must be a function of (text) or of no arguments'
    WHEN p.oid IS NULL THEN 'no longer exists (dropped, or re-created with another identity): remove it'
    WHEN NOT p.prosecdef OR EXISTS (
            SELECT FROM pg_roles AS s
            WHERE (s.rolsuper OR s.rolname IN ('pg_execute_server_program', 'pg_read_server_files',
                                               'pg_write_server_files'))
              AND pg_has_role(p.proowner, s.oid, 'MEMBER'))
        THEN 'must be SECURITY DEFINER and owned by a role that is not a superuser, nor a member of one or of '
             || 'the file and program roles: activations run as woe_anchor''s owner, and a hook must run with '
             || 'narrower rights of its own'
    WHEN coalesce(btrim((SELECT (regexp_split_to_array(substr(c, 13), ','))[
                                array_length(regexp_split_to_array(substr(c, 13), ','), 1)]
                         FROM unnest(p.proconfig) AS c WHERE left(c, 12) = 'search_path=')), '') <> 'pg_temp'
        THEN 'must pin its search_path, with pg_temp last: ALTER FUNCTION ' || hook::text
             || ' SET search_path = <its schemas>, pg_catalog, pg_temp'
    END
FROM (SELECT hook AS oid) AS h
LEFT JOIN pg_proc AS p ON p.oid = h.oid
LEFT JOIN pg_roles AS r ON r.oid = p.proowner
$$;
-- What a hook could leave behind in the activating session for whoever activates to run or reach
-- later: settings, temporary objects (they come first on the search_path), prepared statements,
-- cursors, channels, advisory locks, dblink connections, deferred triggers (seen through this
-- transaction's row counts, so the runner needs track_counts on).
-- Settings: those not at their defaults (a library a hook loads defines settings of its own, at
-- their defaults: no change), with the extension's own (woe_anchor.artifact_write, reader,
-- deactivated, which says what the activation log records, and fit_memory; '' when unset): a
-- setting nothing has defined is a placeholder, which pg_settings does not list. The
-- caller passes search_path as it reads it: in here, this function's own SET clause would hide a
-- changed one.
CREATE FUNCTION woe_anchor_internal.session_state(search_path text) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    dblink text := woe_anchor_internal.dblink();
    state jsonb;
    connections jsonb;
BEGIN
    SELECT jsonb_build_object(
        'settings', (SELECT coalesce(jsonb_object_agg(s.name, s.setting), '{}') FROM pg_settings AS s
                     WHERE s.source <> 'default')
                    || jsonb_build_object('search_path', session_state.search_path)
                    || (SELECT jsonb_object_agg(g, coalesce(current_setting(g, true), ''))
                        FROM unnest(ARRAY['woe_anchor.artifact_write', 'woe_anchor.reader', 'woe_anchor.deactivated',
                                           'woe_anchor.fit_memory'])
                             AS g),
        'temporary', (SELECT jsonb_agg(o ORDER BY o) FROM (
                          SELECT 'c' || c.oid FROM pg_class AS c WHERE c.relnamespace = pg_my_temp_schema()
                          UNION ALL SELECT 'p' || p.oid FROM pg_proc AS p WHERE p.pronamespace = pg_my_temp_schema()
                          UNION ALL SELECT 't' || t.oid FROM pg_type AS t WHERE t.typnamespace = pg_my_temp_schema()
                          UNION ALL SELECT 'o' || o.oid FROM pg_operator AS o WHERE o.oprnamespace = pg_my_temp_schema()
                      ) AS t (o)),
        'prepared', (SELECT jsonb_agg(p.name || ': ' || p.statement ORDER BY p.name) FROM pg_prepared_statements AS p),
        'cursors', (SELECT jsonb_agg(c.name || ': ' || c.statement ORDER BY c.name) FROM pg_cursors AS c),
        'channels', (SELECT jsonb_agg(c ORDER BY c) FROM pg_listening_channels() AS c),
        'advisory', (SELECT jsonb_agg(l.classid || '/' || l.objid || '/' || l.objsubid || l.mode ORDER BY 1)
                     FROM pg_locks AS l WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid()),
        -- rows written to a table with a deferrable constraint trigger or exclusion constraint queue
        -- code that runs at commit as whoever commits, not as the hook's owner
        'deferred', (SELECT jsonb_agg(s.relid || ': ' || (s.n_tup_ins + s.n_tup_upd + s.n_tup_del) ORDER BY s.relid)
                     FROM pg_stat_xact_all_tables AS s
                     WHERE EXISTS (SELECT FROM pg_trigger AS t JOIN pg_constraint AS c ON c.oid = t.tgconstraint
                                   WHERE t.tgrelid = s.relid AND t.tgdeferrable AND c.contype IN ('t', 'x'))))
    INTO state;
    IF dblink IS NOT NULL THEN
        EXECUTE format('SELECT coalesce(to_jsonb(%s.dblink_get_connections()), ''[]'')', dblink) INTO connections;
        state := state || jsonb_build_object('dblink', connections);
    END IF;
    RETURN state;
END
$$;

-- Each hook is checked right before it is called, with its function's and schema's catalog rows
-- locked until commit: its owner (from another session, or from an earlier hook's code) can then
-- neither make it SECURITY INVOKER, nor rename, replace or drop it between the check and the call.
-- It is found by the signature it was registered under, and called by the names read under that
-- lock. A hook that changed the session (above) refuses
-- the activation: the rollback undoes what is transactional, and the prepared statements and
-- dblink connections the hook made or replaced are dropped here.
CREATE FUNCTION woe_anchor_internal.run_activation_hooks() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    hook text;
    registered_owner name;
    f record;
    problem text;
    before jsonb;
    after jsonb;
    stmt text;
BEGIN
    FOR hook, registered_owner IN SELECT a.hook, a.hook_owner FROM ml.woe_anchor_activation_hooks AS a
                       ORDER BY a.registered_at, a.hook LOOP
        SELECT p.oid, n.nspname, p.proname, p.pronargs, pg_get_userbyid(p.proowner) AS owner INTO f
        FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace
        WHERE p.oid = to_regprocedure(hook)
        FOR SHARE;
        -- read again under the lock: renamed or moved in between, it is no longer the hook
        problem := CASE WHEN f.oid IS NULL OR f.oid::regprocedure::text <> hook
                            THEN 'no longer exists (dropped, renamed or moved): remove it'
                        WHEN f.owner <> registered_owner
                            THEN format('now belongs to %s, not to %s who owned it when it was registered: '
                                        'remove it, or add it again', f.owner, registered_owner)
                        ELSE woe_anchor_internal.hook_problem(f.oid) END;
        -- a hook whose function is gone refuses every activation until it is removed: fail closed
        IF problem IS NOT NULL THEN
            RAISE EXCEPTION 'activation hook % %', hook, problem
                USING ERRCODE = 'insufficient_privilege',
                      HINT = format('Fix it, or remove it: SELECT ml.woe_anchor_remove_activation_hook(%L);', hook);
        END IF;
        IF NOT current_setting('track_counts')::boolean THEN
            RAISE EXCEPTION 'activation hooks need track_counts = on: it is how a deferred trigger a hook queued is seen'
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        -- a plain SET outlives the function that ran it
        before := woe_anchor_internal.session_state(current_setting('search_path'));
        EXECUTE format('SELECT %I.%I(%s)', f.nspname, f.proname, CASE WHEN f.pronargs = 1 THEN '$1' ELSE '' END)
            USING NEW.model_key;
        after := woe_anchor_internal.session_state(current_setting('search_path'));
        IF after IS DISTINCT FROM before THEN
            -- the rollback undoes settings, temporary objects, cursors and channels, not these
            FOR stmt IN SELECT p.name FROM pg_prepared_statements AS p
                        WHERE NOT coalesce(before -> 'prepared', '[]') ? (p.name || ': ' || p.statement) LOOP
                EXECUTE format('DEALLOCATE %I', stmt);
            END LOOP;
            IF woe_anchor_internal.dblink() IS NOT NULL THEN
                FOR stmt IN SELECT c FROM jsonb_array_elements_text(coalesce(after -> 'dblink', '[]')) AS c
                            WHERE NOT coalesce(before -> 'dblink', '[]') ? c LOOP
                    EXECUTE format('SELECT %s.dblink_disconnect(%L)', woe_anchor_internal.dblink(), stmt);
                END LOOP;
            END IF;
            RAISE EXCEPTION 'activation hook % changed the session that activates: %', hook,
                (SELECT string_agg(k, ', ') FROM jsonb_object_keys(before) AS k WHERE before -> k IS DISTINCT FROM after -> k)
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = 'A hook must not leave settings, temporary objects, prepared statements, cursors, '
                               'channels, advisory locks, dblink connections or deferred triggers behind for '
                               'whoever activates.';
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TRIGGER woe_anchor_activation_hooks
    AFTER UPDATE OF is_active ON ml.woe_anchor_model_registry_v1
    FOR EACH ROW WHEN (NEW.is_active AND NOT OLD.is_active)
    EXECUTE FUNCTION woe_anchor_internal.run_activation_hooks();

-- Registers a function every activation runs (fit, ml.woe_anchor_activate, scheduled fits, the
-- trainer import), e.g. a re-certification of your pipeline. It takes the model key (text) or
-- nothing; it must be SECURITY DEFINER, owned by a role that is not a superuser, with a pinned
-- search_path ending in pg_temp. Superusers only (the table is theirs).
CREATE FUNCTION ml.woe_anchor_add_activation_hook(hook regprocedure)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    problem text := woe_anchor_internal.hook_problem(hook);
BEGIN
    IF hook IS NULL THEN
        RAISE EXCEPTION 'hook must not be NULL' USING ERRCODE = 'null_value_not_allowed',
            HINT = 'Name a function: ml.woe_anchor_add_activation_hook(''audit.recertify(text)'').';
    ELSIF problem IS NOT NULL THEN
        RAISE EXCEPTION 'activation hook % %', hook, problem USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- the signature as this pinned search_path prints it: schema-qualified
    INSERT INTO ml.woe_anchor_activation_hooks (hook, hook_owner)
    SELECT woe_anchor_add_activation_hook.hook::text, pg_get_userbyid(p.proowner) FROM pg_proc AS p
    WHERE p.oid = woe_anchor_add_activation_hook.hook
    ON CONFLICT ON CONSTRAINT woe_anchor_activation_hooks_pkey DO UPDATE SET hook_owner = EXCLUDED.hook_owner;
END
$$;

-- By the signature a hook was registered under (as an error about it prints it), or by any name
-- of an existing function; a function that is gone can only be named the first way.
CREATE FUNCTION ml.woe_anchor_remove_activation_hook(hook text)
RETURNS boolean
LANGUAGE sql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
WITH gone AS (DELETE FROM ml.woe_anchor_activation_hooks AS a
              WHERE a.hook IN (woe_anchor_remove_activation_hook.hook,
                               to_regprocedure(woe_anchor_remove_activation_hook.hook)::text)
              RETURNING 1)
SELECT count(*) > 0 FROM gone
$$;

COMMENT ON FUNCTION woe_anchor_internal.hook_problem(regprocedure) IS 'woe_anchor internal: why a function cannot be an activation hook';
COMMENT ON FUNCTION woe_anchor_internal.run_activation_hooks() IS 'woe_anchor internal: runs the activation hooks';
COMMENT ON FUNCTION woe_anchor_internal.session_state(text) IS
    'woe_anchor internal: what an activation hook must leave unchanged in the activating session';
COMMENT ON FUNCTION ml.woe_anchor_add_activation_hook(regprocedure) IS
    'Run a function (of the model key, or of nothing) in every model activation''s transaction';
COMMENT ON FUNCTION ml.woe_anchor_remove_activation_hook(text) IS 'Stop running an activation hook; true if it was registered';
