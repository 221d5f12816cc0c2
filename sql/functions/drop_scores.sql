-- The name of a model's partition of the scores table (in schema woe_anchor_scores): by its id,
-- never by its key. The one definition of the rule; the fit asks it for the name it creates.
CREATE FUNCTION woe_anchor_internal.score_partition_name(model_id bigint) RETURNS name
LANGUAGE sql IMMUTABLE PARALLEL SAFE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
RETURN ('woe_anchor_scores_v1_m' || model_id)::name;

-- Deleting (or truncating) registry rows drops the models' score partitions with them. Only
-- the extension's owner (its definer entry points) and superusers delete registry rows, and
-- both may drop the partitions. Whatever depends on a partition goes with it: a view someone
-- made over one cannot keep a model from being dropped.
CREATE FUNCTION woe_anchor_internal.drop_scores() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    part regclass;
BEGIN
    FOR part IN SELECT c.oid::regclass FROM pg_inherits AS i
                JOIN pg_class AS c ON c.oid = i.inhrelid
                WHERE i.inhparent = 'ml.woe_anchor_scores_v1'::regclass
                  AND c.relnamespace = 'woe_anchor_scores'::regnamespace
                  AND (TG_OP = 'TRUNCATE' OR c.relname = woe_anchor_internal.score_partition_name(OLD.model_id)) LOOP
        EXECUTE format('DROP TABLE %s CASCADE', part);
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TRIGGER woe_anchor_drop_scores_on_delete
    AFTER DELETE ON ml.woe_anchor_model_registry_v1
    FOR EACH ROW EXECUTE FUNCTION woe_anchor_internal.drop_scores();
CREATE TRIGGER woe_anchor_drop_scores_on_truncate
    AFTER TRUNCATE ON ml.woe_anchor_model_registry_v1
    FOR EACH STATEMENT EXECUTE FUNCTION woe_anchor_internal.drop_scores();

COMMENT ON FUNCTION woe_anchor_internal.score_partition_name(bigint) IS
    'woe_anchor internal: the name of a model''s partition of the scores table, in schema woe_anchor_scores';
COMMENT ON FUNCTION woe_anchor_internal.drop_scores() IS
    'woe_anchor internal: drops the score partitions of deleted or truncated registry rows';

-- Scores written next to a sharded source's rows (scores_on_shards) live in tables on the
-- shards (ml.woe_anchor_shard_scores). A remote DROP is not part of this transaction; a shard
-- that refuses or is down leaves its table, with a warning.
-- The quoted schema of the dblink extension, NULL when it is not installed: sharded fits,
-- shard-table drops and cross-database scheduling look it up when they need it.
CREATE FUNCTION woe_anchor_internal.dblink() RETURNS text
LANGUAGE sql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT quote_ident(n.nspname) FROM pg_extension AS e
JOIN pg_namespace AS n ON n.oid = e.extnamespace WHERE e.extname = 'dblink'
$$;

-- Drops table woe_anchor_scores.<remote> on a shard, through dblink and the caller's own user
-- mapping (SECURITY INVOKER: on the shard it acts with the caller's rights).
CREATE FUNCTION woe_anchor_internal.drop_shard_table(server text, remote text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    dblink text := woe_anchor_internal.dblink();
BEGIN
    IF dblink IS NULL THEN
        RAISE WARNING 'dblink is not installed: table % on server % stays', remote, server;
        RETURN;
    END IF;
    EXECUTE format('SELECT %s.dblink_exec(%L, %L)', dblink, server, format('DROP TABLE IF EXISTS woe_anchor_scores.%I', remote));
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'could not drop table % on server %: %', remote, server, SQLERRM;
END
$$;

COMMENT ON FUNCTION woe_anchor_internal.dblink() IS 'woe_anchor internal: the quoted schema of dblink, if installed';
COMMENT ON FUNCTION woe_anchor_internal.drop_shard_table(text, text) IS
    'woe_anchor internal: drops one shard table through dblink, warning instead of failing';
