-- Deleting (or truncating) registry rows drops the models' score partitions with them.
-- SECURITY DEFINER: a partition is owned by the role whose fit wrote it, and any role that
-- may delete registry rows must be able to drop it; it drops nothing but partitions of
-- ml.woe_anchor_scores_v1 in schema woe_anchor_scores.
CREATE FUNCTION ml._woe_anchor_drop_scores() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    part regclass;
BEGIN
    FOR part IN SELECT c.oid::regclass FROM pg_inherits AS i
                JOIN pg_class AS c ON c.oid = i.inhrelid
                WHERE i.inhparent = 'ml.woe_anchor_scores_v1'::regclass
                  AND c.relnamespace = 'woe_anchor_scores'::regnamespace
                  AND (TG_OP = 'TRUNCATE' OR c.relname = 'woe_anchor_scores_v1_m' || OLD.model_id) LOOP
        EXECUTE format('DROP TABLE %s', part);
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TRIGGER woe_anchor_drop_scores_on_delete
    AFTER DELETE ON ml.woe_anchor_model_registry_v1
    FOR EACH ROW EXECUTE FUNCTION ml._woe_anchor_drop_scores();
CREATE TRIGGER woe_anchor_drop_scores_on_truncate
    AFTER TRUNCATE ON ml.woe_anchor_model_registry_v1
    FOR EACH STATEMENT EXECUTE FUNCTION ml._woe_anchor_drop_scores();

-- Attaches a fit's finished score table as its model's partition.
-- SECURITY DEFINER: ATTACH PARTITION needs ownership of ml.woe_anchor_scores_v1, which a
-- trainer role does not have. It attaches only woe_anchor_scores.woe_anchor_scores_v1_m<id>
-- of a registry row, as a table (plain, or partitioned for scores on shards) that is not yet
-- a partition, under that row's key.
CREATE FUNCTION ml._woe_anchor_attach_scores(model_id bigint) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    key text;
    part regclass;
BEGIN
    SELECT r.model_key INTO key FROM ml.woe_anchor_model_registry_v1 AS r
    WHERE r.model_id = _woe_anchor_attach_scores.model_id;
    SELECT c.oid::regclass INTO part FROM pg_class AS c
    WHERE c.relnamespace = 'woe_anchor_scores'::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition
      AND c.relname = 'woe_anchor_scores_v1_m' || _woe_anchor_attach_scores.model_id;
    IF key IS NULL OR part IS NULL THEN
        RAISE EXCEPTION 'no unattached score table for model id %', _woe_anchor_attach_scores.model_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    EXECUTE format('ALTER TABLE ml.woe_anchor_scores_v1 ATTACH PARTITION %s FOR VALUES IN (%L)', part, key);
END
$$;

COMMENT ON FUNCTION ml._woe_anchor_drop_scores() IS
    'woe_anchor internal: drops the score partitions of deleted or truncated registry rows';
COMMENT ON FUNCTION ml._woe_anchor_attach_scores(bigint) IS
    'woe_anchor internal: attaches a fit''s score table as its model''s partition';

-- Scores written next to a sharded source's rows (scores_on_shards) live in tables on the
-- shards. These find and drop them, through dblink and the caller's user mapping (SECURITY
-- INVOKER: on a shard they act with the caller's rights). A remote DROP is not part of this
-- transaction; a shard that refuses or is down leaves its table, with a warning.
-- The quoted schema of the dblink extension, NULL when it is not installed: sharded fits,
-- shard-table drops and cross-database scheduling look it up when they need it.
CREATE FUNCTION ml._woe_anchor_dblink() RETURNS text
LANGUAGE sql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT quote_ident(n.nspname) FROM pg_extension AS e
JOIN pg_namespace AS n ON n.oid = e.extnamespace WHERE e.extname = 'dblink'
$$;

CREATE FUNCTION ml._woe_anchor_shard_score_tables(model_key text)
RETURNS TABLE (server text, remote text)
LANGUAGE sql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT s.srvname::text, format('%I.%I', o.schema_name, o.table_name)
FROM ml.woe_anchor_model_registry_v1 AS r
JOIN pg_class AS p ON p.relnamespace = 'woe_anchor_scores'::regnamespace
                  AND p.relname = 'woe_anchor_scores_v1_m' || r.model_id
JOIN pg_inherits AS i ON i.inhparent = p.oid
JOIN pg_foreign_table AS f ON f.ftrelid = i.inhrelid
JOIN pg_foreign_server AS s ON s.oid = f.ftserver
CROSS JOIN LATERAL (SELECT max(v.option_value) FILTER (WHERE v.option_name = 'schema_name') AS schema_name,
                           max(v.option_value) FILTER (WHERE v.option_name = 'table_name') AS table_name
                    FROM pg_options_to_table(f.ftoptions) AS v) AS o
WHERE r.model_key = _woe_anchor_shard_score_tables.model_key
$$;

CREATE FUNCTION ml._woe_anchor_drop_shard_table(server text, remote text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    dblink text := ml._woe_anchor_dblink();
BEGIN
    IF dblink IS NULL THEN
        RAISE WARNING 'dblink is not installed: table % on server % stays', remote, server;
        RETURN;
    END IF;
    EXECUTE format('SELECT %s.dblink_exec(%L, %L)', dblink, server, format('DROP TABLE IF EXISTS %s', remote));
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'could not drop table % on server %: %', remote, server, SQLERRM;
END
$$;

CREATE FUNCTION ml._woe_anchor_drop_shard_scores(model_key text) RETURNS void
LANGUAGE sql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT ml._woe_anchor_drop_shard_table(t.server, t.remote)
FROM ml._woe_anchor_shard_score_tables(_woe_anchor_drop_shard_scores.model_key) AS t
$$;

COMMENT ON FUNCTION ml._woe_anchor_dblink() IS 'woe_anchor internal: the quoted schema of dblink, if installed';
COMMENT ON FUNCTION ml._woe_anchor_shard_score_tables(text) IS
    'woe_anchor internal: the shard tables that hold a model''s scores (scores_on_shards)';
COMMENT ON FUNCTION ml._woe_anchor_drop_shard_table(text, text) IS
    'woe_anchor internal: drops one shard table through dblink, warning instead of failing';
COMMENT ON FUNCTION ml._woe_anchor_drop_shard_scores(text) IS
    'woe_anchor internal: drops the shard tables of a model whose scores were written on shards';
