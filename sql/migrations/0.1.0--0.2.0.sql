-- 0.2.0: the privilege model of docs/security.md. Every artifact is owned by the extension and
-- written only by its SECURITY DEFINER entry points; trainers create nothing the extension later
-- acts on. On a fresh install the steps after the new tables find nothing to convert.

-- Who calls a definer entry point. The caller inserts a ticket; a trigger stamps it with the role
-- that really runs the INSERT (current_user, whatever functions it went through), its backend
-- and its transaction; the entry point consumes it. Rows never outlive their transaction.
CREATE TABLE ml._woe_anchor_callers (
    ticket     uuid PRIMARY KEY,
    role_name  name NOT NULL,
    backend    int NOT NULL,
    xact       xid8 NOT NULL
);
COMMENT ON TABLE ml._woe_anchor_callers IS
    'woe_anchor internal: tickets that tell a definer entry point which role called it';

-- The score tables a scores_on_shards fit wrote on a shard (schema woe_anchor_scores there).
-- Nothing local points at them: a scan of ml.woe_anchor_scores_v1 never leaves this server.
CREATE TABLE ml.woe_anchor_shard_scores (
    model_key     text NOT NULL REFERENCES ml.woe_anchor_model_registry_v1 (model_key) ON DELETE CASCADE,
    server        name NOT NULL,
    remote_table  text NOT NULL CHECK (remote_table ~ '^woe_anchor_scores_v1_(m[0-9]+_)?[0-9a-f]{12}_p[0-9]+$'),
    n_rows        bigint,
    PRIMARY KEY (model_key, server, remote_table)
);
COMMENT ON TABLE ml.woe_anchor_shard_scores IS
    'woe_anchor: where the scores of a model fitted with scores_on_shards live (table woe_anchor_scores.<remote_table> on server)';
SELECT pg_catalog.pg_extension_config_dump('ml.woe_anchor_shard_scores', '');

-- The views ml.woe_anchor_create_views and ml.woe_anchor_create_source_view made. woe_anchor
-- replaces or drops only these: a view of the same name that is not here is someone else's.
CREATE TABLE ml.woe_anchor_views (
    view_name            text PRIMARY KEY,
    kind                 text NOT NULL CHECK (kind IN ('bands', 'scores', 'train', 'source')),
    source               text,
    band_schema_version  int,
    -- train view: the administrator's SQL expression every query runs first ('' for none)
    guard                text,
    -- source view: the relations and column mapping it was made from
    spec                 jsonb,
    created_by           name NOT NULL DEFAULT current_user,
    created_at           timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE ml.woe_anchor_views IS 'woe_anchor: the views woe_anchor created (it replaces or drops no other)';
SELECT pg_catalog.pg_extension_config_dump('ml.woe_anchor_views', '');

-- Functions every activation runs in its own transaction (a fit's, ml.woe_anchor_activate, a
-- scheduled fit's, the trainer import's): a re-certification, say. One that raises refuses the
-- activation. Each takes the model key, or nothing.
CREATE TABLE ml.woe_anchor_activation_hooks (
    hook           regprocedure PRIMARY KEY,
    registered_by  name NOT NULL DEFAULT current_user,
    registered_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE ml.woe_anchor_activation_hooks IS 'woe_anchor: functions every model activation runs';
SELECT pg_catalog.pg_extension_config_dump('ml.woe_anchor_activation_hooks', '');

-- Upgrade from 0.1.0: the score partitions a trainer created and owned become the extension's.
-- A partition with anything of its owner's attached (a trigger, an index, a constraint, a policy,
-- a dependent view...) is rebuilt from its rows; the rest only change owner. Shard score
-- partitions (a partitioned table of foreign tables) become rows of ml.woe_anchor_shard_scores
-- and a plain table of their local rows.
DO $$
DECLARE
    owner name := (SELECT pg_catalog.pg_get_userbyid(e.extowner) FROM pg_catalog.pg_extension AS e
                   WHERE e.extname = 'woe_anchor');
    part record;
    key text;
    clean boolean;
    fresh text;
    locals text;
BEGIN
    FOR part IN SELECT c.oid, c.relname, c.relkind, r.model_key
                FROM pg_catalog.pg_inherits AS i JOIN pg_catalog.pg_class AS c ON c.oid = i.inhrelid
                JOIN ml.woe_anchor_model_registry_v1 AS r ON c.relname = 'woe_anchor_scores_v1_m' || r.model_id
                WHERE i.inhparent = 'ml.woe_anchor_scores_v1'::regclass LOOP
        key := quote_literal(part.model_key);
        IF part.relkind = 'p' THEN
            -- scores on shards: record the remote tables, keep the local leaves' rows
            INSERT INTO ml.woe_anchor_shard_scores (model_key, server, remote_table)
            SELECT part.model_key, s.srvname, o.table_name
            FROM pg_catalog.pg_partition_tree(part.oid) AS t
                 JOIN pg_catalog.pg_foreign_table AS f ON f.ftrelid = t.relid
                 JOIN pg_catalog.pg_foreign_server AS s ON s.oid = f.ftserver
                 CROSS JOIN LATERAL (
                     SELECT max(v.option_value) FILTER (WHERE v.option_name = 'schema_name') AS schema_name,
                            max(v.option_value) FILTER (WHERE v.option_name = 'table_name') AS table_name
                     FROM pg_catalog.pg_options_to_table(f.ftoptions) AS v) AS o
            WHERE o.schema_name = 'woe_anchor_scores'
              AND o.table_name ~ '^woe_anchor_scores_v1_m[0-9]+_[0-9a-f]{12}_p[0-9]+$';
            SELECT string_agg(format('SELECT * FROM %s', t.relid::regclass), ' UNION ALL ')
            INTO locals
            FROM pg_catalog.pg_partition_tree(part.oid) AS t JOIN pg_catalog.pg_class AS c ON c.oid = t.relid
            WHERE t.isleaf AND c.relkind = 'r';
            clean := false;
        ELSE
            locals := format('SELECT * FROM %s', part.oid::regclass);
            -- clean: nothing depends on it but its row type, TOAST table, key and the two checks
            clean := NOT EXISTS (
                SELECT FROM pg_catalog.pg_depend AS d
                LEFT JOIN pg_catalog.pg_constraint AS k ON d.classid = 'pg_catalog.pg_constraint'::regclass
                                                       AND k.oid = d.objid
                LEFT JOIN pg_catalog.pg_class AS x ON d.classid = 'pg_catalog.pg_class'::regclass AND x.oid = d.objid
                WHERE d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = part.oid
                  AND d.classid <> 'pg_catalog.pg_type'::regclass
                  AND NOT (k.contype = 'p' OR k.conname IN ('woe_anchor_scores_v1_fold_id_check',
                                                            'woe_anchor_scores_model_key_check'))
                  AND NOT (x.relkind = 't'))
              AND NOT EXISTS (SELECT FROM pg_catalog.pg_class AS c
                              WHERE c.oid = part.oid AND (c.relrowsecurity OR c.relhastriggers OR c.relhasrules
                                                          OR c.relacl IS NOT NULL))
              AND NOT EXISTS (SELECT FROM pg_catalog.pg_attribute AS a
                              WHERE a.attrelid = part.oid AND (a.attacl IS NOT NULL OR a.atthasdef))
              AND (SELECT count(*) FROM pg_catalog.pg_index AS i WHERE i.indrelid = part.oid) = 1
              AND (SELECT count(*) FROM pg_catalog.pg_constraint AS k WHERE k.conrelid = part.oid) = 3;
        END IF;
        IF clean THEN
            EXECUTE format('ALTER TABLE %s OWNER TO %I', part.oid::regclass, owner);
            CONTINUE;
        END IF;
        -- rebuild: the rows, read as the superuser running the update (no policy or trigger runs)
        fresh := format('woe_anchor_scores.%I', part.relname || '_rebuilt');
        EXECUTE format('CREATE TABLE %s AS SELECT model_key::text AS model_key, generation::int AS generation, '
                       'listing_id::bigint AS listing_id, t0::timestamptz AS t0, fold_id::int AS fold_id, '
                       'is_oof::boolean AS is_oof, woe_logit::float8 AS woe_logit, woe_p::float8 AS woe_p '
                       'FROM (%s) AS s', fresh,
                       coalesce(locals, 'SELECT * FROM ml.woe_anchor_scores_v1 WHERE false'));
        EXECUTE format('ALTER TABLE ml.woe_anchor_scores_v1 DETACH PARTITION %s', part.oid::regclass);
        EXECUTE format('DROP TABLE %s CASCADE', part.oid::regclass);
        EXECUTE format('ALTER TABLE %s RENAME TO %I', fresh, part.relname);
        fresh := format('woe_anchor_scores.%I', part.relname);
        EXECUTE format('ALTER TABLE %s OWNER TO %I', fresh, owner);
        EXECUTE format('ALTER TABLE %s ADD PRIMARY KEY (generation, listing_id, t0, model_key), '
                       'ADD CONSTRAINT woe_anchor_scores_v1_fold_id_check CHECK (fold_id >= 0), '
                       'ADD CONSTRAINT woe_anchor_scores_model_key_check CHECK (model_key = %s), '
                       'ALTER COLUMN is_oof SET NOT NULL, ALTER COLUMN woe_logit SET NOT NULL, '
                       'ALTER COLUMN woe_p SET NOT NULL', fresh, key);
        EXECUTE format('ALTER TABLE ml.woe_anchor_scores_v1 ATTACH PARTITION %s FOR VALUES IN (%s)', fresh, key);
    END LOOP;
END
$$;

-- 0.1.0 let trainers write the artifact tables, take ids and create score tables: all revoked
-- here; grants.sql then re-applies the new model to every role that held the old one.
DO $$
DECLARE
    grantee regrole;
BEGIN
    FOR grantee IN SELECT DISTINCT a.grantee::regrole
                   FROM pg_catalog.pg_class AS c, aclexplode(c.relacl) AS a
                   WHERE c.oid IN ('ml.woe_anchor_model_registry_v1'::regclass, 'ml.woe_anchor_cuts_v1'::regclass,
                                   'ml.woe_anchor_map_v1'::regclass, 'ml.woe_anchor_model_id_seq'::regclass)
                     AND a.grantee <> 0 AND a.grantee <> c.relowner
                   UNION
                   SELECT DISTINCT a.grantee::regrole
                   FROM pg_catalog.pg_namespace AS n, aclexplode(n.nspacl) AS a
                   WHERE n.nspname = 'woe_anchor_scores' AND a.grantee <> 0 AND a.grantee <> n.nspowner LOOP
        EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ml.woe_anchor_model_registry_v1, '
                       'ml.woe_anchor_cuts_v1, ml.woe_anchor_map_v1 FROM %s', grantee);
        EXECUTE format('REVOKE ALL ON SEQUENCE ml.woe_anchor_model_id_seq FROM %s', grantee);
        EXECUTE format('REVOKE ALL ON SCHEMA woe_anchor_scores FROM %s', grantee);
    END LOOP;
END
$$;

-- The live views 0.1.0's ml.woe_anchor_create_views made (its comment marks them) read the source
-- with their owner's rights; from now on they read it with the reader's. They are recorded as
-- woe_anchor's.
DO $$
DECLARE
    v record;
BEGIN
    FOR v IN SELECT format('%I.%I', 'ml', c.relname) AS view, d.kind, m[1] AS source, m[2]::int AS version
             FROM pg_catalog.pg_class AS c
             JOIN (VALUES ('v_woe_anchor_bands_live_v1', 'bands'), ('woe_anchor_scores_live_v1', 'scores'),
                          ('woe_anchor_scores_live_train_v', 'train')) AS d (name, kind) ON d.name = c.relname
             CROSS JOIN LATERAL regexp_match(pg_catalog.obj_description(c.oid, 'pg_class'),
                                             ' over (.*), band schema ([0-9]+)$') AS m
             WHERE c.relnamespace = to_regnamespace('ml') AND c.relkind = 'v'
               AND left(pg_catalog.obj_description(c.oid, 'pg_class'), 12) = 'woe_anchor: ' LOOP
        EXECUTE format('ALTER VIEW %s SET (security_invoker = true)', v.view);
        INSERT INTO ml.woe_anchor_views (view_name, kind, source, band_schema_version, guard)
        VALUES (v.view, v.kind, v.source, v.version, CASE WHEN v.kind = 'train' THEN '' END);
    END LOOP;
END
$$;

-- The partition attach of 0.1.0 is done by the fit's persist entry point now.
DROP FUNCTION IF EXISTS ml._woe_anchor_attach_scores(bigint);
-- the trainer import says what it mapped (functions/import.sql)
DROP FUNCTION IF EXISTS ml.woe_anchor_import_trainer(name);
DROP FUNCTION IF EXISTS ml._woe_anchor_constrain_scores_sql(text, text);
-- the live views take a guard and replace only views woe_anchor made (functions/inference.sql)
DROP FUNCTION IF EXISTS ml.woe_anchor_create_views(regclass, int);
DROP FUNCTION IF EXISTS ml._woe_anchor_create_views(oid, int);
-- training features take the source explicitly too
DROP FUNCTION IF EXISTS ml.woe_anchor_training_features(text);
DROP FUNCTION IF EXISTS ml._woe_anchor_training_features_sql(text);
-- shard score tables are found in ml.woe_anchor_shard_scores now
DROP FUNCTION IF EXISTS ml._woe_anchor_shard_score_tables(text);
DROP FUNCTION IF EXISTS ml._woe_anchor_drop_shard_scores(text);
