-- Makes one model the only active one, and logs who asked, from which model, and why. Internal:
-- only definer entry points (running as the extension's owner) call it, after they know who
-- asked. Activations (and fits) serialize on the registry lock.
CREATE FUNCTION woe_anchor_internal.set_active(model_key text, by_role name, action text, reason jsonb,
                                               replaced_id bigint DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target bigint;
    previous text;
    previous_id bigint;
BEGIN
    IF model_key IS NULL THEN
        RAISE EXCEPTION 'model_key must not be NULL' USING ERRCODE = 'null_value_not_allowed',
            HINT = 'List models with ml.woe_anchor_models().';
    END IF;
    LOCK TABLE ml.woe_anchor_model_registry_v1 IN SHARE ROW EXCLUSIVE MODE;
    SELECT r.model_id INTO target FROM ml.woe_anchor_model_registry_v1 AS r
    WHERE r.model_key = set_active.model_key;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'model % does not exist', quote_literal(set_active.model_key)
            USING ERRCODE = 'no_data_found', HINT = 'List models with ml.woe_anchor_models().';
    END IF;
    SELECT r.model_key, r.model_id INTO previous, previous_id FROM ml.woe_anchor_model_registry_v1 AS r
    WHERE r.is_active;
    IF previous IS NOT DISTINCT FROM set_active.model_key THEN
        RETURN;
    END IF;
    IF previous IS NULL AND replaced_id IS NOT NULL THEN
        -- the active model of this key was replaced (its row is gone): it served before
        previous := set_active.model_key;
        previous_id := replaced_id;
    END IF;
    -- logged first: log_direct_activation then sees that this activation is logged already
    INSERT INTO ml.woe_anchor_activations (by_role, from_model, to_model, from_model_id, to_model_id, action, reason)
    VALUES (by_role, previous, set_active.model_key, previous_id, target, action, reason);
    -- two statements: the one-active index is checked row by row
    UPDATE ml.woe_anchor_model_registry_v1 AS r SET is_active = false
    WHERE r.is_active AND r.model_key <> set_active.model_key;
    BEGIN
        UPDATE ml.woe_anchor_model_registry_v1 AS r SET is_active = true
        WHERE r.model_key = set_active.model_key AND NOT r.is_active;
    EXCEPTION WHEN unique_violation THEN
        -- a REPEATABLE READ snapshot that missed a model activated after it was taken
        RAISE EXCEPTION 'another model was activated after this transaction''s snapshot was taken'
            USING ERRCODE = 'serialization_failure', HINT = 'Run it again.';
    END;
END
$$;

-- SECURITY DEFINER: trainers have no UPDATE on the registry. Which model serves is the one
-- switch every trainer may set; the ticket says who set it.
CREATE FUNCTION woe_anchor_internal.activate(ticket uuid, model_key text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM woe_anchor_internal.set_active(model_key, woe_anchor_internal.caller(ticket), 'activate', NULL);
END
$$;

CREATE FUNCTION ml.woe_anchor_activate(model_key text)
RETURNS void
LANGUAGE sql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT woe_anchor_internal.activate(woe_anchor_internal.ticket(), model_key)
$$;

-- The model a rollback restores (and a prune keeps): the one that served before the active
-- model, by the last activation that made the active model serve.
CREATE FUNCTION woe_anchor_internal.previous_model()
RETURNS text
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current bigint := (SELECT r.model_id FROM ml.woe_anchor_model_registry_v1 AS r WHERE r.is_active);
    before bigint := NULL;  -- log entries older than the one that made `current` serve
    entry record;
BEGIN
    -- by model_id: a key fitted again is another model. A model that served before but is gone
    -- (dropped, or replaced in place) hands over to the one that served before it.
    LOOP
        SELECT a.id, a.from_model, a.from_model_id INTO entry FROM ml.woe_anchor_activations AS a
        WHERE a.to_model_id = current AND a.action IN ('activate', 'rollback') AND (before IS NULL OR a.id < before)
        ORDER BY a.id DESC LIMIT 1;
        IF NOT FOUND OR entry.from_model_id IS NULL THEN
            RETURN NULL;
        END IF;
        IF EXISTS (SELECT FROM ml.woe_anchor_model_registry_v1 AS r
                   WHERE r.model_id = entry.from_model_id AND NOT r.is_active) THEN
            RETURN entry.from_model;
        END IF;
        current := entry.from_model_id;
        before := entry.id;
    END LOOP;
END
$$;

-- SECURITY DEFINER, as activate: re-activates the model that served before the active one (the
-- activation log says which, by model id; one that is gone hands over to the one before it).
CREATE FUNCTION woe_anchor_internal.rollback(ticket uuid)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who name := woe_anchor_internal.caller(ticket);
    current text;
    previous text;
BEGIN
    LOCK TABLE ml.woe_anchor_model_registry_v1 IN SHARE ROW EXCLUSIVE MODE;
    SELECT r.model_key INTO current FROM ml.woe_anchor_model_registry_v1 AS r WHERE r.is_active;
    IF current IS NULL THEN
        RAISE EXCEPTION 'no model is active: there is nothing to roll back'
            USING ERRCODE = 'no_data_found', HINT = 'Activate a model with ml.woe_anchor_activate(model_key).';
    END IF;
    previous := woe_anchor_internal.previous_model();
    IF previous IS NULL THEN
        RAISE EXCEPTION 'no model to roll back to: none that served before % is stored', quote_literal(current)
            USING ERRCODE = 'no_data_found',
                  HINT = 'ml.woe_anchor_activations lists the activations; ml.woe_anchor_activate(model_key) picks one.';
    END IF;
    PERFORM woe_anchor_internal.set_active(previous, who, 'rollback', jsonb_build_object('rollback_from', current));
    RETURN previous;
END
$$;

-- Re-activates the model that served before the active one; returns its key.
CREATE FUNCTION ml.woe_anchor_rollback()
RETURNS text
LANGUAGE sql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT woe_anchor_internal.rollback(woe_anchor_internal.ticket())
$$;

CREATE FUNCTION woe_anchor_internal.check_policy(name text, value float8)
RETURNS void
LANGUAGE plpython3u VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $woe_anchor_py$
@LOAD_PACKAGE@
import json
woe_anchor.errors.reported(plpy, woe_anchor.policy.parse, json.dumps({name: value}))
$woe_anchor_py$;

-- Sets one check of the activation gate (value NULL removes it); returns the whole policy. Every
-- fit that would activate its model must pass every check, or its model stays inactive (see
-- ml.woe_anchor_activations). Administrators only: the table is the extension's.
CREATE FUNCTION ml.woe_anchor_set_policy(name text, value float8)
RETURNS SETOF ml.woe_anchor_policy
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    @ERROR_VARIABLES@
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION 'name must not be NULL' USING ERRCODE = 'null_value_not_allowed',
            HINT = 'The gate''s checks: min_train_sold, min_oof_auc, min_eval_auc, max_auc_drop; retention: '
                   'keep_models, keep_days.';
    END IF;
    IF value IS NOT NULL THEN
        PERFORM woe_anchor_internal.check_policy(name, value);
    END IF;
    DELETE FROM ml.woe_anchor_policy AS p WHERE p.name = woe_anchor_set_policy.name;
    IF value IS NOT NULL THEN
        INSERT INTO ml.woe_anchor_policy (name, value) VALUES (name, value);
    END IF;
    RETURN QUERY SELECT * FROM ml.woe_anchor_policy AS p ORDER BY p.name;
@RERAISE_AS_PLAIN_ERROR@
END
$$;

-- The registry's lock, with the scores table's lock in `scores_mode` taken first: SHARE UPDATE
-- EXCLUSIVE for a fit (its ATTACH PARTITION), ACCESS EXCLUSIVE to drop partitions (drop, prune,
-- replace; it waits for every reader of stored scores). Every writer takes the two in this order,
-- so a drop waiting for readers of stored scores holds no lock of the registry: fits (they wait
-- behind it for the scores table, holding nothing either), activations and rollbacks go on, and a
-- reader that activates in its transaction does not deadlock with it. Both are plain waits:
-- pg_locks shows them, lock_timeout bounds each. A transaction that holds the registry's lock
-- already (it activated or pinned first) and then drops or prunes can still deadlock with such a
-- reader; PostgreSQL ends one of the two (40P01). ONLY: the partitions are reached through their
-- parent alone.
CREATE FUNCTION woe_anchor_internal.lock_registry(scores_mode text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF scores_mode NOT IN ('SHARE UPDATE EXCLUSIVE', 'ACCESS EXCLUSIVE') THEN
        RAISE EXCEPTION 'unknown lock mode %', scores_mode USING ERRCODE = 'invalid_parameter_value';
    END IF;
    EXECUTE format('LOCK TABLE ONLY ml.woe_anchor_scores_v1 IN %s MODE', scores_mode);
    LOCK TABLE ml.woe_anchor_model_registry_v1 IN SHARE ROW EXCLUSIVE MODE;
END
$$;

-- Deletes models of the registry (their cuts, maps and score partitions go with them) and
-- returns each with the shard tables it had. Internal: the definer entry points below call it.
CREATE FUNCTION woe_anchor_internal.delete_models(keys text[])
RETURNS TABLE (model_key text, fitted_by name, server name, remote_table text)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
SET woe_anchor.artifact_write = on
AS $$
BEGIN
    RETURN QUERY
    SELECT r.model_key, r.fitted_by, t.server, t.remote_table
    FROM ml.woe_anchor_model_registry_v1 AS r
    LEFT JOIN ml.woe_anchor_shard_scores AS t ON t.model_key = r.model_key
    WHERE r.model_key = ANY (keys);
    DELETE FROM ml.woe_anchor_model_registry_v1 AS r WHERE r.model_key = ANY (keys);
END
$$;

-- SECURITY DEFINER: trainers cannot delete registry rows. A role drops only models it may
-- manage: its own, those of roles it is a member of, or any as a superuser.
CREATE FUNCTION woe_anchor_internal.drop_model(ticket uuid, key text)
RETURNS TABLE (model_key text, fitted_by name, server name, remote_table text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who name := woe_anchor_internal.caller(ticket);
    owner name;
BEGIN
    SELECT r.fitted_by INTO owner FROM ml.woe_anchor_model_registry_v1 AS r WHERE r.model_key = key;
    IF NOT FOUND THEN
        RETURN;  -- nothing to drop: no lock to hold
    END IF;
    -- refused before it waits for the locks (and, meanwhile, makes new readers of scores wait)
    PERFORM woe_anchor_internal.require_manage(who, owner, 'drop', key);
    PERFORM woe_anchor_internal.lock_registry('ACCESS EXCLUSIVE');
    SELECT r.fitted_by INTO owner FROM ml.woe_anchor_model_registry_v1 AS r
    WHERE r.model_key = key;
    IF NOT FOUND THEN
        RETURN;  -- dropped meanwhile
    END IF;
    PERFORM woe_anchor_internal.require_manage(who, owner, 'drop', key);
    -- read under the lock: an activation that committed while this waited for it counts
    IF EXISTS (SELECT FROM ml.woe_anchor_model_registry_v1 AS r WHERE r.model_key = key AND r.is_active) THEN
        RAISE WARNING 'model % was the active one: no model is active now, and the live views score nothing',
            quote_literal(key)
            USING HINT = 'Activate another with ml.woe_anchor_activate(model_key) (ml.woe_anchor_models() lists them).';
    END IF;
    RETURN QUERY SELECT * FROM woe_anchor_internal.delete_models(ARRAY[key]);
END
$$;

-- SECURITY DEFINER, as above: among the models the caller may manage, keeps the newest `keep`
-- and never the active one.
CREATE FUNCTION woe_anchor_internal.prune(ticket uuid, keep int)
RETURNS TABLE (model_key text, fitted_by name, server name, remote_table text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who name;
BEGIN
    IF keep IS NULL THEN
        RAISE EXCEPTION 'keep must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    ELSIF keep < 0 THEN
        RAISE EXCEPTION 'keep must be 0 or more, got %', keep USING ERRCODE = 'invalid_parameter_value';
    END IF;
    who := woe_anchor_internal.caller(ticket);  -- a ticket is good for one call
    -- nothing to prune: no lock that makes readers of stored scores wait
    IF cardinality(woe_anchor_internal.prunable(who, keep, NULL, false)) = 0 THEN
        RETURN;
    END IF;
    PERFORM woe_anchor_internal.lock_registry('ACCESS EXCLUSIVE');
    RETURN QUERY SELECT * FROM woe_anchor_internal.prune_models(who, keep, NULL, false);
END
$$;

-- The models role `who` may manage (with `fitted_only`, those it fitted itself) that nothing keeps:
-- not among the newest `keep` of them, not younger than `keep_days` days (NULL: no age rule), not
-- active, not the one a rollback restores, not pinned. Read under the registry's lock to be final.
CREATE FUNCTION woe_anchor_internal.prunable(who name, keep int, keep_days float8, fitted_only boolean)
RETURNS text[]
LANGUAGE sql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT coalesce(array_agg(m.model_key ORDER BY m.model_key), '{}') FROM (
    SELECT r.model_key, r.is_active, r.created_at,
           -- newest by the order models were stored in (ids are taken under the registry's lock);
           -- created_at is when a fit's transaction began, and fits overlap
           row_number() OVER (ORDER BY r.model_id DESC) AS newest
    FROM ml.woe_anchor_model_registry_v1 AS r
    WHERE CASE WHEN fitted_only THEN r.fitted_by = who ELSE woe_anchor_internal.may_manage(who, r.fitted_by) END
   ) AS m
WHERE NOT m.is_active AND m.newest > keep
  AND (keep_days IS NULL OR m.created_at < now() - make_interval(secs => keep_days * 86400))
  AND m.model_key IS DISTINCT FROM woe_anchor_internal.previous_model()
  AND NOT EXISTS (SELECT FROM ml.woe_anchor_model_notes AS n WHERE n.model_key = m.model_key AND n.pinned)
$$;

-- Deletes what `prunable` names and returns the models with their shard tables. Internal:
-- ml.woe_anchor_prune and, with the retention policy, every fit's persist (over the fitter's own
-- models: a superuser's scheduled fit must not prune every team's) call it as the extension's
-- owner, holding the locks of lock_registry('ACCESS EXCLUSIVE').
CREATE FUNCTION woe_anchor_internal.prune_models(who name, keep int, keep_days float8, fitted_only boolean)
RETURNS TABLE (model_key text, fitted_by name, server name, remote_table text)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    LOCK TABLE ml.woe_anchor_model_registry_v1 IN SHARE ROW EXCLUSIVE MODE;
    -- the models that must stay, as this snapshot sees them: at REPEATABLE READ one activated or
    -- dropped since it was taken (a changed rollback target) fails here (40001) rather than let
    -- the model that serves before it now be pruned
    PERFORM FROM ml.woe_anchor_model_registry_v1 AS r
    WHERE r.is_active OR r.model_key = woe_anchor_internal.previous_model() FOR UPDATE;
    RETURN QUERY SELECT * FROM woe_anchor_internal.delete_models(
        woe_anchor_internal.prunable(who, keep, keep_days, fitted_only));
END
$$;

-- A dropped model's shard table: dropped with the user mapping of the role that wrote it, so
-- only when that role itself dropped the model; otherwise it stays, with a warning
-- (docs/security.md, "Shards").
CREATE FUNCTION woe_anchor_internal.drop_shard_table_of(model_key text, fitted_by name, server name, remote_table text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF server IS NULL THEN
        RETURN;
    ELSIF fitted_by = current_user THEN
        PERFORM woe_anchor_internal.drop_shard_table(server, remote_table);
    ELSE
        RAISE WARNING 'table woe_anchor_scores.% on server % stays: model % was fitted by %, whose user mapping wrote it',
            remote_table, server, quote_literal(model_key), fitted_by
            USING HINT = format('Role %s can drop it on the shard.', fitted_by);
    END IF;
END
$$;

-- Removes a model and all its artifacts (its score partition is dropped, not emptied).
CREATE FUNCTION ml.woe_anchor_drop_model(model_key text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d record;
    existed boolean := false;
BEGIN
    FOR d IN SELECT * FROM woe_anchor_internal.drop_model(woe_anchor_internal.ticket(), model_key) LOOP
        existed := true;
        PERFORM woe_anchor_internal.drop_shard_table_of(d.model_key, d.fitted_by, d.server, d.remote_table);
    END LOOP;
    RETURN existed;
END
$$;

-- Keeps the newest `keep` of the models you may manage, and the active one; returns the keys it dropped.
CREATE FUNCTION ml.woe_anchor_prune(keep int)
RETURNS SETOF text
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d record;
    previous text;
BEGIN
    FOR d IN SELECT * FROM woe_anchor_internal.prune(woe_anchor_internal.ticket(), keep) ORDER BY 1 LOOP
        PERFORM woe_anchor_internal.drop_shard_table_of(d.model_key, d.fitted_by, d.server, d.remote_table);
        IF d.model_key IS DISTINCT FROM previous THEN
            RETURN NEXT d.model_key;
        END IF;
        previous := d.model_key;
    END LOOP;
END
$$;

-- What is stored: one row per model with its size on disk.
CREATE FUNCTION ml.woe_anchor_models()
RETURNS TABLE (model_key text, is_active boolean, created_at timestamptz, train_cutoff_ts timestamptz,
               n_folds int, n_train_sold bigint, base_rate float8, map_rows bigint, score_rows bigint,
               scores_bytes bigint, source_relation text, description text, tags text[], pinned boolean)
LANGUAGE sql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.model_key, r.is_active, r.created_at, r.train_cutoff_ts, r.n_folds, r.n_train_sold, r.base_rate,
           (SELECT count(*) FROM ml.woe_anchor_map_v1 AS m WHERE m.model_key = r.model_key),
           r.n_train_sold,  -- one row per TRAIN SOLD row (on the shards for scores_on_shards)
           -- looked up by name in the catalog: to_regclass would need USAGE on the schema, which no role has
           (SELECT pg_total_relation_size(c.oid) FROM pg_class AS c
            WHERE c.relnamespace = 'woe_anchor_scores'::regnamespace AND c.relname = woe_anchor_internal.score_partition_name(r.model_id)),
           r.source_relation, n.description, coalesce(n.tags, '{}'), coalesce(n.pinned, false)
    FROM ml.woe_anchor_model_registry_v1 AS r
    LEFT JOIN ml.woe_anchor_model_notes AS n ON n.model_key = r.model_key
    ORDER BY r.created_at DESC, r.model_id DESC
$$;

-- SECURITY DEFINER: trainers have no DML on the notes either. A role annotates the models it may
-- manage (its own, those of roles it is a member of, any as a superuser); NULL keeps what is there.
CREATE FUNCTION woe_anchor_internal.annotate(ticket uuid, model_key text, description text, tags text[],
                                             pinned boolean)
RETURNS ml.woe_anchor_model_notes
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who name := woe_anchor_internal.caller(ticket);
    owner name;
    note ml.woe_anchor_model_notes;
BEGIN
    -- the lock a prune holds while it reads the pins: a pin waits for a running prune (and finds its
    -- model gone), and a prune waits for a pin that is being written (and keeps its model)
    IF array_ndims(annotate.tags) > 1 OR array_position(annotate.tags, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'tags must be a list of text without NULLs, got %', annotate.tags
            USING ERRCODE = 'invalid_parameter_value', HINT = 'tags => ''{production,q3}''';
    END IF;
    LOCK TABLE ml.woe_anchor_model_registry_v1 IN SHARE ROW EXCLUSIVE MODE;
    SELECT r.fitted_by INTO owner FROM ml.woe_anchor_model_registry_v1 AS r WHERE r.model_key = annotate.model_key;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'model % does not exist', quote_literal(annotate.model_key)
            USING ERRCODE = 'no_data_found', HINT = 'List models with ml.woe_anchor_models().';
    END IF;
    PERFORM woe_anchor_internal.require_manage(who, owner, 'annotate', annotate.model_key);
    INSERT INTO ml.woe_anchor_model_notes AS n (model_key, description, tags, pinned, updated_by)
    VALUES (annotate.model_key, annotate.description, coalesce(annotate.tags, '{}'), coalesce(annotate.pinned, false), who)
    ON CONFLICT ON CONSTRAINT woe_anchor_model_notes_pkey DO UPDATE
        SET description = coalesce(annotate.description, n.description), tags = coalesce(annotate.tags, n.tags),
            pinned = coalesce(annotate.pinned, n.pinned), updated_by = who, updated_at = now()
    RETURNING n.* INTO note;
    RETURN note;
END
$$;

-- Describes, tags or pins a model (NULL keeps what is there); a pinned model is never pruned.
-- Returns the model's notes.
CREATE FUNCTION ml.woe_anchor_annotate(model_key text, description text DEFAULT NULL, tags text[] DEFAULT NULL,
                                       pinned boolean DEFAULT NULL)
RETURNS ml.woe_anchor_model_notes
LANGUAGE sql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT woe_anchor_internal.annotate(woe_anchor_internal.ticket(), model_key, description, tags, pinned)
$$;

COMMENT ON FUNCTION woe_anchor_internal.set_active(text, name, text, jsonb, bigint) IS 'woe_anchor internal: makes one model the only active one, and logs it';
COMMENT ON FUNCTION woe_anchor_internal.previous_model() IS 'woe_anchor internal: the model a rollback restores';
COMMENT ON FUNCTION woe_anchor_internal.rollback(uuid) IS 'woe_anchor internal: re-activates the model that served before the active one';
COMMENT ON FUNCTION woe_anchor_internal.check_policy(text, float8) IS 'woe_anchor internal: checks one gate check''s name and value';
COMMENT ON FUNCTION ml.woe_anchor_set_policy(text, float8) IS 'Set one check of the activation gate every activating fit must pass (NULL removes it); returns the policy';
COMMENT ON FUNCTION ml.woe_anchor_rollback() IS 'Re-activate the model that served before the active one; returns its key';
COMMENT ON FUNCTION woe_anchor_internal.activate(uuid, text) IS 'woe_anchor internal: activation for a ticket''s role';
COMMENT ON FUNCTION ml.woe_anchor_activate(text) IS 'Make this WOE anchor model the only active one';
COMMENT ON FUNCTION woe_anchor_internal.lock_registry(text) IS 'woe_anchor internal: the registry''s lock, with the scores table''s taken first';
COMMENT ON FUNCTION woe_anchor_internal.prunable(name, int, float8, boolean) IS 'woe_anchor internal: the models of a role that nothing keeps';
COMMENT ON FUNCTION woe_anchor_internal.delete_models(text[]) IS 'woe_anchor internal: deletes models, returning their shard tables';
COMMENT ON FUNCTION woe_anchor_internal.drop_model(uuid, text) IS 'woe_anchor internal: drops a model the ticket''s role may manage';
COMMENT ON FUNCTION woe_anchor_internal.prune(uuid, int) IS 'woe_anchor internal: prunes the models the ticket''s role may manage';
COMMENT ON FUNCTION woe_anchor_internal.prune_models(name, int, float8, boolean) IS 'woe_anchor internal: deletes the models of a role that nothing keeps';
COMMENT ON FUNCTION woe_anchor_internal.drop_shard_table_of(text, name, name, text) IS
    'woe_anchor internal: drops a dropped model''s shard table when the caller wrote it, else warns';
COMMENT ON FUNCTION ml.woe_anchor_drop_model(text) IS 'Drop a WOE anchor model and all its artifacts; true if it existed';
COMMENT ON FUNCTION ml.woe_anchor_prune(int) IS
    'Drop all but the newest N of the WOE anchor models you may manage, never the active one, the one a rollback would restore, nor a pinned one';
COMMENT ON FUNCTION ml.woe_anchor_models() IS 'Stored WOE anchor models, newest first, with their sizes, description, tags and pin';
COMMENT ON FUNCTION woe_anchor_internal.annotate(uuid, text, text, text[], boolean) IS 'woe_anchor internal: notes on a model the ticket''s role may manage';
COMMENT ON FUNCTION ml.woe_anchor_annotate(text, text, text[], boolean) IS 'Describe, tag or pin a model (NULL keeps what is there); a pinned model is never pruned';

-- Quality recorded at fit time: AUC and log loss (OOF, in-sample, eval), then per band IV and fold stability.
CREATE FUNCTION ml.woe_anchor_quality(model_key text DEFAULT NULL)
RETURNS TABLE (metric text, band_name text, value float8)
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- an unknown key or no active model is an error here too, as in every other model function
    IF NOT EXISTS (SELECT FROM ml.woe_anchor_model_registry_v1 AS r
                   WHERE CASE WHEN woe_anchor_quality.model_key IS NULL THEN r.is_active
                              ELSE r.model_key = woe_anchor_quality.model_key END) THEN
        IF woe_anchor_quality.model_key IS NULL THEN
            RAISE EXCEPTION 'no model is active' USING ERRCODE = 'no_data_found',
                HINT = 'Activate a stored model with ml.woe_anchor_activate(model_key), or name one.';
        END IF;
        RAISE EXCEPTION 'model % does not exist', quote_literal(woe_anchor_quality.model_key)
            USING ERRCODE = 'no_data_found', HINT = 'List models with ml.woe_anchor_models().';
    END IF;
    RETURN QUERY
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
    CROSS JOIN LATERAL jsonb_each(b.value) AS s;
END
$$;

COMMENT ON FUNCTION ml.woe_anchor_quality(text) IS 'Quality of a WOE anchor model (default: the active one) recorded at fit time';

-- A fitted model's artifacts do not change. Its activation does, and the extension's own writers
-- (persist, import, delete: they run with woe_anchor.artifact_write on) write what they write.
-- Deleting a registry row drops a whole model, its cuts and map rows going with it (the cascade
-- runs once the registry row is gone); single cuts, map or score rows are neither updated nor
-- deleted, and those tables are not truncated. A restore only inserts, and passes. An
-- administrator who must repair a model by hand says so first: SET LOCAL woe_anchor.artifact_write = on.
CREATE FUNCTION woe_anchor_internal.artifact_guard() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF coalesce(current_setting('woe_anchor.artifact_write', true), '') = 'on'
       OR (TG_OP = 'DELETE' AND TG_TABLE_NAME = 'woe_anchor_model_registry_v1')
       OR (TG_OP = 'DELETE' AND TG_TABLE_NAME IN ('woe_anchor_cuts_v1', 'woe_anchor_map_v1')
           AND NOT EXISTS (SELECT FROM ml.woe_anchor_model_registry_v1 AS r WHERE r.model_key = OLD.model_key))
       OR (TG_OP = 'UPDATE' AND TG_TABLE_NAME = 'woe_anchor_model_registry_v1'
           AND to_jsonb(NEW) - 'is_active' = to_jsonb(OLD) - 'is_active') THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    RAISE EXCEPTION 'the artifacts of a fitted model do not change: % of % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'Only activation changes a model. Drop it (ml.woe_anchor_drop_model) and fit again; to repair '
                     'one by hand, SET LOCAL woe_anchor.artifact_write = on first.';
END
$$;

-- An activation by UPDATE of is_active (the trainer's way; superusers only) is logged too, so that
-- rollback and prune know which model served before: the model deactivated earlier in the same
-- transaction (woe_anchor.deactivated, which an activation hook may not change), if any.
-- set_active's activations are logged already: the newest entry, of this transaction, names it.
CREATE FUNCTION woe_anchor_internal.log_direct_activation() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    previous bigint;
BEGIN
    IF OLD.is_active AND NOT NEW.is_active THEN
        PERFORM set_config('woe_anchor.deactivated', OLD.model_id::text, true);
    ELSIF NEW.is_active AND NOT OLD.is_active THEN
        previous := nullif(current_setting('woe_anchor.deactivated', true), '')::bigint;
        PERFORM set_config('woe_anchor.deactivated', '', true);
        IF NOT EXISTS (SELECT FROM ml.woe_anchor_activations AS a
                       WHERE a.id = (SELECT max(b.id) FROM ml.woe_anchor_activations AS b)
                         AND a.to_model_id = NEW.model_id AND a.at = now()) THEN
            INSERT INTO ml.woe_anchor_activations (by_role, from_model, to_model, from_model_id, to_model_id, action,
                                                   reason)
            VALUES (current_user,
                    (SELECT r.model_key FROM ml.woe_anchor_model_registry_v1 AS r WHERE r.model_id = previous),
                    NEW.model_key, previous, NEW.model_id, 'activate', '{"direct_update": true}');
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER woe_anchor_log_direct_activation
    AFTER UPDATE OF is_active ON ml.woe_anchor_model_registry_v1
    FOR EACH ROW WHEN (NEW.is_active IS DISTINCT FROM OLD.is_active)
    EXECUTE FUNCTION woe_anchor_internal.log_direct_activation();
CREATE TRIGGER woe_anchor_registry_immutable
    BEFORE UPDATE OR DELETE ON ml.woe_anchor_model_registry_v1
    FOR EACH ROW EXECUTE FUNCTION woe_anchor_internal.artifact_guard();
CREATE TRIGGER woe_anchor_cuts_immutable
    BEFORE UPDATE OR DELETE ON ml.woe_anchor_cuts_v1
    FOR EACH ROW EXECUTE FUNCTION woe_anchor_internal.artifact_guard();
CREATE TRIGGER woe_anchor_map_immutable
    BEFORE UPDATE OR DELETE ON ml.woe_anchor_map_v1
    FOR EACH ROW EXECUTE FUNCTION woe_anchor_internal.artifact_guard();
CREATE TRIGGER woe_anchor_scores_immutable
    BEFORE UPDATE OR DELETE ON ml.woe_anchor_scores_v1
    FOR EACH ROW EXECUTE FUNCTION woe_anchor_internal.artifact_guard();
CREATE TRIGGER woe_anchor_cuts_no_truncate
    BEFORE TRUNCATE ON ml.woe_anchor_cuts_v1
    FOR EACH STATEMENT EXECUTE FUNCTION woe_anchor_internal.artifact_guard();
CREATE TRIGGER woe_anchor_map_no_truncate
    BEFORE TRUNCATE ON ml.woe_anchor_map_v1
    FOR EACH STATEMENT EXECUTE FUNCTION woe_anchor_internal.artifact_guard();
CREATE TRIGGER woe_anchor_scores_no_truncate
    BEFORE TRUNCATE ON ml.woe_anchor_scores_v1
    FOR EACH STATEMENT EXECUTE FUNCTION woe_anchor_internal.artifact_guard();

COMMENT ON FUNCTION woe_anchor_internal.log_direct_activation() IS
    'woe_anchor internal: logs an activation made by UPDATE of is_active (who, from which model)';
COMMENT ON FUNCTION woe_anchor_internal.artifact_guard() IS
    'woe_anchor internal: a fitted model''s artifacts do not change (activation aside)';

-- Files in this database's directory (default tablespace) that no relation owns. A transaction
-- that created a relation and never ended (its backend killed, the server crashed: a fit killed
-- while writing its scores, say) leaves its files behind; PostgreSQL reclaims them only when the
-- database is dropped. A relation being created by a transaction still running shows here too,
-- so look again once nothing runs, then remove the files listed with the server stopped. The
-- default tablespace only; refused while prepared transactions exist. Superusers only (it lists
-- the data directory).
CREATE FUNCTION ml.woe_anchor_orphaned_files()
RETURNS TABLE (file text, bytes bigint, modified timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- a prepared transaction's new relations are not visible yet: their files would look orphaned
    IF EXISTS (SELECT FROM pg_prepared_xacts AS x WHERE x.database = current_database()) THEN
        RAISE EXCEPTION 'this database has prepared transactions: the relations they created are not visible yet'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'COMMIT PREPARED or ROLLBACK PREPARED them (pg_prepared_xacts lists them), then look again.';
    END IF;
    IF (SELECT d.dattablespace FROM pg_database AS d WHERE d.datname = current_database())
       <> (SELECT t.oid FROM pg_tablespace AS t WHERE t.spcname = 'pg_default') THEN
        RAISE EXCEPTION 'this database''s default tablespace is not pg_default: only base/ is searched'
            USING ERRCODE = 'feature_not_supported';
    END IF;
    RETURN QUERY
    WITH dir AS (SELECT 'base/' || d.oid AS path FROM pg_database AS d WHERE d.datname = current_database()),
         named AS (SELECT dir.path || '/' || f AS file, f AS name FROM dir, pg_ls_dir(dir.path) AS f
                   WHERE f ~ '^[0-9]+(_(fsm|vm|init))?([.][0-9]+)?$'),
         owned AS (SELECT pg_relation_filenode(c.oid) AS node FROM pg_class AS c
                   WHERE c.reltablespace = 0)
    SELECT n.file, s.size, s.modification
    FROM named AS n CROSS JOIN LATERAL pg_stat_file(n.file, true) AS s
    -- a dropped relation's first file stays, empty, until the next checkpoint: not listed (an
    -- empty orphan holds no space either)
    WHERE s.size > 0
      AND NOT EXISTS (SELECT FROM owned AS o WHERE o.node = substring(n.name FROM '^[0-9]+')::oid)
    ORDER BY n.file;
END
$$;

COMMENT ON FUNCTION ml.woe_anchor_orphaned_files() IS
    'Files of this database that no relation owns (left by killed or crashed transactions); superusers only';
