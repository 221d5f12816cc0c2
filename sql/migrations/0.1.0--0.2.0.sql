-- 0.2.0: the privilege model of docs/security.md. Every artifact is owned by the extension and
-- written only by its SECURITY DEFINER entry points; trainers create nothing the extension later
-- acts on. On a fresh install the steps after the new tables find nothing to convert.

-- The live views 0.1.0 made are altered at the end, after the tables they read. A reader locks a
-- view, then what it reads; taking the views here first, the outermost first as readers take
-- them, makes readers wait for the update instead of deadlocking with it.
DO $$
DECLARE
    v text;
BEGIN
    FOREACH v IN ARRAY ARRAY['woe_anchor_scores_live_train_v', 'woe_anchor_scores_live_v1',
                             'v_woe_anchor_bands_live_v1'] LOOP
        IF to_regclass(format('ml.%I', v)) IS NOT NULL THEN
            EXECUTE format('LOCK TABLE ml.%I IN ACCESS EXCLUSIVE MODE', v);
        END IF;
    END LOOP;
END
$$;

-- The extension's internal routines live in a schema of their own, out of the way of \df ml.*.
-- Created here, so it cannot exist before (no one else's objects in it).
CREATE SCHEMA woe_anchor_internal;
COMMENT ON SCHEMA woe_anchor_internal IS 'woe_anchor: internal routines (call the ml.woe_anchor_* ones)';

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

-- The schemas a fit writes its scores into before ml._woe_anchor_persist takes them over: each
-- made for one caller and one transaction (CREATE for that caller, no USAGE), dropped by the
-- persist. A deferred trigger (functions/persist.sql) fails a commit that would leave one behind.
CREATE TABLE ml._woe_anchor_staging (
    schema_name  name PRIMARY KEY,
    role_name    name NOT NULL,
    xact         xid8 NOT NULL
);
COMMENT ON TABLE ml._woe_anchor_staging IS
    'woe_anchor internal: staging schemas open in a running fit (always empty once committed)';

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

-- The views (and per-row scoring functions) ml.woe_anchor_create_views and
-- ml.woe_anchor_create_source_view made. woe_anchor replaces or drops only these: a view of the
-- same name that is not here is someone else's.
CREATE TABLE ml.woe_anchor_views (
    -- a view's name, format('%I.%I'); a function's signature, regprocedure
    view_name            text PRIMARY KEY,
    kind                 text NOT NULL CHECK (kind IN ('bands', 'scores', 'train', 'function', 'source')),
    -- the set of live views over one source (its name, NULL for the Python trainer's view names)
    set_name             text,
    source               text,
    band_schema_version  int,
    -- train view: the administrator's SQL expression every query runs first ('' for none)
    guard                text,
    -- source view: the relations and column mapping it was made from
    spec                 jsonb,
    created_by           name NOT NULL DEFAULT current_user,
    created_at           timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE ml.woe_anchor_views IS 'woe_anchor: the views and functions woe_anchor created (it replaces or drops no other)';
SELECT pg_catalog.pg_extension_config_dump('ml.woe_anchor_views', '');

-- What people say of a model, which they may change (unlike its artifacts): a description, tags,
-- and a pin that keeps it from every prune. A row per model that has any; it goes with the model.
CREATE TABLE ml.woe_anchor_model_notes (
    model_key    text PRIMARY KEY REFERENCES ml.woe_anchor_model_registry_v1 (model_key) ON DELETE CASCADE,
    description  text,
    tags         text[] NOT NULL DEFAULT '{}',
    pinned       boolean NOT NULL DEFAULT false,
    updated_by   name NOT NULL DEFAULT current_user,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE ml.woe_anchor_model_notes IS
    'woe_anchor: a model''s description, tags and pin (ml.woe_anchor_annotate), the one thing about a model that changes';
SELECT pg_catalog.pg_extension_config_dump('ml.woe_anchor_model_notes', '');

-- A model's realized performance per UTC week of t0 on listings whose outcome is settled,
-- recorded by ml.woe_anchor_monitor (a run replaces the weeks it measures again).
CREATE TABLE ml.woe_anchor_realized (
    model_key      text NOT NULL REFERENCES ml.woe_anchor_model_registry_v1 (model_key) ON DELETE CASCADE,
    week           date NOT NULL,
    n_rows         bigint NOT NULL,
    n_slow21       bigint NOT NULL,
    auc            float8,
    logloss        float8,
    mean_p         float8,
    observed_rate  float8,
    recorded_by    name NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_key, week)
);
COMMENT ON TABLE ml.woe_anchor_realized IS
    'woe_anchor: realized AUC, log loss and calibration per week of settled listings (ml.woe_anchor_monitor)';
SELECT pg_catalog.pg_extension_config_dump('ml.woe_anchor_realized', '');

-- Each band's PSI at each ml.woe_anchor_monitor run (its window ending at `at`).
CREATE TABLE ml.woe_anchor_psi (
    model_key    text NOT NULL REFERENCES ml.woe_anchor_model_registry_v1 (model_key) ON DELETE CASCADE,
    at           timestamptz NOT NULL,
    window_days  float8 NOT NULL,
    band_name    text NOT NULL,
    psi          float8 NOT NULL,
    recorded_by  name NOT NULL,
    PRIMARY KEY (model_key, at, band_name)
);
COMMENT ON TABLE ml.woe_anchor_psi IS 'woe_anchor: each band''s PSI at each monitor run (ml.woe_anchor_monitor)';
SELECT pg_catalog.pg_extension_config_dump('ml.woe_anchor_psi', '');

-- What ml.woe_anchor_monitor found past its thresholds: a band's PSI, a week's realized AUC. Kept
-- after their model goes, with its id: a later model of the same key is not that model.
CREATE TABLE ml.woe_anchor_alerts (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    by_role    name NOT NULL,
    model_key  text NOT NULL,
    model_id   bigint NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('drift', 'realized_auc', 'no_rows')),
    subject    text NOT NULL,
    value      float8,
    threshold  float8
);
COMMENT ON TABLE ml.woe_anchor_alerts IS
    'woe_anchor: alerts of ml.woe_anchor_monitor (kind drift: a band''s PSI; realized_auc: a week''s AUC; no_rows: an empty drift window)';
SELECT pg_catalog.pg_extension_config_dump('ml.woe_anchor_alerts', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('ml.woe_anchor_alerts', 'id'), '');

-- What a monitor run measured, it measured with its caller's rights, over a source and through a
-- model's bands that may be another role's: a trainer's bands, monitored by an administrator over
-- a table the trainer may not read, would show it that table's distribution. So each record is
-- seen by the role that made it and the roles that are members of it (and superusers) alone.
DO $$
DECLARE
    monitored text;
    recorder text;
BEGIN
    FOR monitored, recorder IN VALUES ('woe_anchor_realized', 'recorded_by'), ('woe_anchor_psi', 'recorded_by'),
                                      ('woe_anchor_alerts', 'by_role') LOOP
        EXECUTE format('ALTER TABLE ml.%I ENABLE ROW LEVEL SECURITY', monitored);
        -- by the recorder's name, as models are their fitters' (fitted_by): a role re-created under
        -- the name of a dropped one sees its records; pg_roles, not a cast, so that a dropped role's
        -- name fails no query
        EXECUTE format('CREATE POLICY recorder_only ON ml.%I FOR SELECT USING (EXISTS ('
                       'SELECT FROM pg_catalog.pg_roles AS r WHERE r.rolname = %I '
                       'AND pg_catalog.pg_has_role(CURRENT_USER, r.oid, ''MEMBER'')))', monitored, recorder);
    END LOOP;
END
$$;

-- The activation policy: checks every fit that would activate its model must pass (gate.py),
-- set by an administrator with ml.woe_anchor_set_policy. No row: no check.
CREATE TABLE ml.woe_anchor_policy (
    name    text PRIMARY KEY,
    value   float8 NOT NULL,
    set_by  name NOT NULL DEFAULT current_user,
    set_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE ml.woe_anchor_policy IS 'woe_anchor: the checks a fit must pass to activate its model (the activation gate)';
SELECT pg_catalog.pg_extension_config_dump('ml.woe_anchor_policy', '');

-- Every change of the serving model, and every refusal of a fit's gate: who, when, from which
-- model to which, and why. Written only by the extension's entry points (set_active, persist).
CREATE TABLE ml.woe_anchor_activations (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    by_role     name NOT NULL,
    from_model  text,
    to_model    text NOT NULL,
    -- which models, by model_id (a key can be fitted again; an id is never reused)
    from_model_id  bigint,
    to_model_id    bigint NOT NULL,
    action      text NOT NULL CHECK (action IN ('activate', 'rollback', 'refused')),
    reason      jsonb
);
COMMENT ON TABLE ml.woe_anchor_activations IS
    'woe_anchor: every activation (who, when, from which model, why) and every model a fit''s gate refused';
COMMENT ON COLUMN ml.woe_anchor_activations.by_role IS 'The role that asked (a fit''s, ml.woe_anchor_activate''s or ml.woe_anchor_rollback''s caller)';
COMMENT ON COLUMN ml.woe_anchor_activations.from_model IS 'The model that served before (NULL: none)';
COMMENT ON COLUMN ml.woe_anchor_activations.to_model IS 'The model activated, or the one the gate refused';
COMMENT ON COLUMN ml.woe_anchor_activations.action IS 'activate, rollback, or refused (the gate kept the model inactive)';
COMMENT ON COLUMN ml.woe_anchor_activations.reason IS 'Why: {"fit": true, "gate": {...}} with each gate check''s value and limit, {"rollback_from": key}, or NULL';
SELECT pg_catalog.pg_extension_config_dump('ml.woe_anchor_activations', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('ml.woe_anchor_activations', 'id'), '');

-- Functions every activation runs in its own transaction (a fit's, ml.woe_anchor_activate, a
-- scheduled fit's, the trainer import's): a re-certification, say. One that raises refuses the
-- activation. Each takes the model key, or nothing.
-- A hook is kept by its signature and its owner's name, not by its OID (regprocedure): pg_upgrade
-- keeps no function's OID and refuses a table with a regprocedure column, and a dump restores names.
CREATE TABLE ml.woe_anchor_activation_hooks (
    hook           text PRIMARY KEY,   -- the function's schema-qualified signature
    hook_owner     name NOT NULL,      -- its owner when registered: another owner's function of that name never runs
    registered_by  name NOT NULL DEFAULT current_user,
    registered_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE ml.woe_anchor_activation_hooks IS 'woe_anchor: functions every model activation runs';
SELECT pg_catalog.pg_extension_config_dump('ml.woe_anchor_activation_hooks', '');

-- Upgrade from 0.1.0: the score partitions a trainer created and owned become the extension's,
-- and nothing of the trainer's stays attached to them. Reading or even planning a read of a
-- table runs code attached to it (index expressions, statistics, policies...), so before anything
-- reads a partition this takes it over and removes every such object; dropping runs no code.
CREATE FUNCTION ml._woe_anchor_take_over(t regclass, owner name, model_key text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d record;
    grantee text;
    -- the fit's own key and checks (the key by its definition: the table may have been renamed)
    kept text[] := ARRAY[
        'PRIMARY KEY (generation, listing_id, t0, model_key)',
        'woe_anchor_scores_v1_fold_id_check CHECK ((fold_id >= 0))',
        format('woe_anchor_scores_model_key_check CHECK ((model_key = %s::text))', quote_literal(model_key))];
BEGIN
    EXECUTE format('ALTER TABLE %s OWNER TO %I', t, owner);
    EXECUTE format('ALTER TABLE %s NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY', t);
    FOR grantee IN SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END
                   FROM pg_class AS c, aclexplode(c.relacl) AS a WHERE c.oid = t AND a.grantee <> c.relowner
                   UNION
                   SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END
                   FROM pg_attribute AS b, aclexplode(b.attacl) AS a WHERE b.attrelid = t LOOP
        EXECUTE format('REVOKE ALL ON %s FROM %s', t, grantee);
        EXECUTE format('REVOKE ALL (%s) ON %s FROM %s', (SELECT string_agg(quote_ident(b.attname), ', ')
            FROM pg_attribute AS b WHERE b.attrelid = t AND b.attnum > 0 AND NOT b.attisdropped), t, grantee);
    END LOOP;
    FOR d IN SELECT DISTINCT dep.classid, dep.objid FROM pg_depend AS dep
             WHERE dep.refclassid = 'pg_class'::regclass AND dep.refobjid = t AND dep.deptype IN ('n', 'a') LOOP
        CASE d.classid
        WHEN 'pg_constraint'::regclass THEN
            -- a NOT NULL runs no code, and from 18 it is a constraint (inherited, or needed by a primary
            -- key): it stays, as it does before 18, where it is a flag of the column
            IF NOT EXISTS (SELECT FROM pg_constraint AS k WHERE k.oid = d.objid
                           AND (k.contype = 'n'
                                OR (CASE WHEN k.contype = 'p' THEN '' ELSE k.conname || ' ' END)
                                   || pg_get_constraintdef(k.oid) = ANY (kept))) THEN
                EXECUTE format('ALTER TABLE %s DROP CONSTRAINT IF EXISTS %I CASCADE', t,
                               (SELECT k.conname FROM pg_constraint AS k WHERE k.oid = d.objid));
            END IF;
        WHEN 'pg_class'::regclass THEN
            IF (SELECT c.relkind FROM pg_class AS c WHERE c.oid = d.objid) = 'i'
               AND NOT EXISTS (SELECT FROM pg_constraint AS k WHERE k.conindid = d.objid) THEN
                EXECUTE format('DROP INDEX IF EXISTS %s', d.objid::regclass);
            ELSIF (SELECT c.relkind FROM pg_class AS c WHERE c.oid = d.objid) = 'S' THEN
                EXECUTE format('ALTER SEQUENCE %s OWNED BY NONE', d.objid::regclass);
            END IF;
        WHEN 'pg_trigger'::regclass THEN
            EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', (SELECT g.tgname FROM pg_trigger AS g WHERE g.oid = d.objid), t);
        WHEN 'pg_rewrite'::regclass THEN
            -- a view over the table goes; any other rule naming it (on it, or on a table of someone's) too
            IF (SELECT c.relkind FROM pg_rewrite AS w JOIN pg_class AS c ON c.oid = w.ev_class
                WHERE w.oid = d.objid AND w.ev_class <> t) IN ('v', 'm') THEN
                EXECUTE format('DROP %s IF EXISTS %s CASCADE',
                    CASE (SELECT c.relkind FROM pg_rewrite AS w JOIN pg_class AS c ON c.oid = w.ev_class
                          WHERE w.oid = d.objid) WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END,
                    (SELECT w.ev_class::regclass FROM pg_rewrite AS w WHERE w.oid = d.objid));
            ELSIF EXISTS (SELECT FROM pg_rewrite AS w WHERE w.oid = d.objid) THEN
                EXECUTE format('DROP RULE IF EXISTS %I ON %s', (SELECT w.rulename FROM pg_rewrite AS w WHERE w.oid = d.objid),
                               (SELECT w.ev_class::regclass FROM pg_rewrite AS w WHERE w.oid = d.objid));
            END IF;
        WHEN 'pg_policy'::regclass THEN
            EXECUTE format('DROP POLICY IF EXISTS %I ON %s', (SELECT p.polname FROM pg_policy AS p WHERE p.oid = d.objid), t);
        WHEN 'pg_statistic_ext'::regclass THEN
            EXECUTE format('DROP STATISTICS IF EXISTS %I.%I',
                (SELECT n.nspname FROM pg_statistic_ext AS x JOIN pg_namespace AS n ON n.oid = x.stxnamespace WHERE x.oid = d.objid),
                (SELECT x.stxname FROM pg_statistic_ext AS x WHERE x.oid = d.objid));
        WHEN 'pg_attrdef'::regclass THEN
            EXECUTE format('ALTER TABLE %s ALTER COLUMN %I DROP DEFAULT', t,
                (SELECT b.attname FROM pg_attrdef AS f JOIN pg_attribute AS b ON b.attrelid = f.adrelid AND b.attnum = f.adnum
                 WHERE f.oid = d.objid));
        WHEN 'pg_publication_rel'::regclass THEN
            EXECUTE format('ALTER PUBLICATION %I DROP TABLE %s',
                (SELECT p.pubname FROM pg_publication_rel AS r JOIN pg_publication AS p ON p.oid = r.prpubid WHERE r.oid = d.objid), t);
        ELSE
            RAISE EXCEPTION '% is attached to score partition %: remove it, then update', pg_describe_object(d.classid, d.objid, 0), t
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END CASE;
    END LOOP;
END
$$;

-- Every partition of the scores table is matched to its model by its bound (a trainer could
-- rename or move its table), taken over and cleaned, and gets its canonical name, exactly the key
-- and checks a fit gives it, and nothing else. A shard score partition (a partitioned table of
-- foreign tables) becomes rows of ml.woe_anchor_shard_scores and a plain table of its local rows:
-- its nodes are detached first, so that what a trainer hung on them comes loose with them.
-- A partition of no model's, and anything else in schema woe_anchor_scores, goes.
DO $$
DECLARE
    owner name := (SELECT pg_catalog.pg_get_userbyid(e.extowner) FROM pg_catalog.pg_extension AS e
                   WHERE e.extname = 'woe_anchor');
    part record;
    node record;
    nodes regclass[];
    key text;
    canonical text;
    fresh text;
    locals text;
BEGIN
    -- bounds are compared as pg_get_expr prints them with standard strings
    PERFORM pg_catalog.set_config('standard_conforming_strings', 'on', true);
    -- foreign keys into or out of the scores tree go first: detaching a partition checks a key that
    -- references it, by planning a query over the referencing table (a trainer's) as whoever detaches
    FOR node IN SELECT k.conrelid::regclass AS rel, k.conname
                FROM pg_catalog.pg_constraint AS k
                WHERE k.contype = 'f' AND k.conparentid = 0
                  AND (k.conrelid IN (SELECT t.relid FROM pg_catalog.pg_partition_tree('ml.woe_anchor_scores_v1') AS t)
                       OR k.confrelid IN (SELECT t.relid FROM pg_catalog.pg_partition_tree('ml.woe_anchor_scores_v1') AS t)) LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', node.rel, node.conname);
    END LOOP;
    -- out of the way first, under names no one can take: a partition may carry another model's
    -- canonical name, or sit in a schema of its owner's
    FOR node IN SELECT i.inhrelid AS rel FROM pg_catalog.pg_inherits AS i
                WHERE i.inhparent = 'ml.woe_anchor_scores_v1'::regclass LOOP
        EXECUTE format('ALTER TABLE %s RENAME TO %I', node.rel::regclass,
                       'woe_anchor_upgrade_' || replace(gen_random_uuid()::text, '-', ''));
        IF (SELECT c.relnamespace FROM pg_catalog.pg_class AS c WHERE c.oid = node.rel)
           <> 'woe_anchor_scores'::regnamespace THEN
            EXECUTE format('ALTER TABLE %s SET SCHEMA woe_anchor_scores', node.rel::regclass);
        END IF;
    END LOOP;
    -- schema woe_anchor_scores is the extension's: what trainers created there and left unattached goes
    FOR node IN SELECT c.oid::regclass AS rel, c.relkind FROM pg_catalog.pg_class AS c
                WHERE c.relnamespace = 'woe_anchor_scores'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
                  AND c.oid NOT IN (SELECT t.relid FROM pg_catalog.pg_partition_tree('ml.woe_anchor_scores_v1') AS t) LOOP
        CONTINUE WHEN NOT EXISTS (SELECT FROM pg_catalog.pg_class AS c WHERE c.oid = node.rel);  -- dropped with another
        RAISE NOTICE 'dropping %, which is no model''s', node.rel;
        EXECUTE format('DROP %s %s CASCADE', CASE node.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                                              WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'S' THEN 'SEQUENCE'
                                                              ELSE 'TABLE' END, node.rel);
    END LOOP;
    FOR node IN SELECT p.oid::regprocedure AS fn FROM pg_catalog.pg_proc AS p
                WHERE p.pronamespace = 'woe_anchor_scores'::regnamespace LOOP
        EXECUTE format('DROP ROUTINE %s CASCADE', node.fn);
    END LOOP;
    FOR node IN SELECT t.oid::regtype AS ty FROM pg_catalog.pg_type AS t
                WHERE t.typnamespace = 'woe_anchor_scores'::regnamespace AND t.typrelid = 0 AND t.typelem = 0 LOOP
        CONTINUE WHEN NOT EXISTS (SELECT FROM pg_catalog.pg_type AS t WHERE t.oid = node.ty);
        EXECUTE format('DROP TYPE %s CASCADE', node.ty);
    END LOOP;
    FOR part IN SELECT c.oid, c.relkind, r.model_key, r.model_id
                FROM pg_catalog.pg_inherits AS i JOIN pg_catalog.pg_class AS c ON c.oid = i.inhrelid
                LEFT JOIN ml.woe_anchor_model_registry_v1 AS r
                  ON pg_catalog.pg_get_expr(c.relpartbound, c.oid)
                     = 'FOR VALUES IN (''' || replace(r.model_key, '''', '''''') || ''')'
                WHERE i.inhparent = 'ml.woe_anchor_scores_v1'::regclass LOOP
        IF part.model_key IS NULL THEN
            RAISE NOTICE 'dropping %, a partition of the scores table that is no model''s', part.oid::regclass;
            EXECUTE format('ALTER TABLE ml.woe_anchor_scores_v1 DETACH PARTITION %s', part.oid::regclass);
            EXECUTE format('DROP TABLE %s CASCADE', part.oid::regclass);
            CONTINUE;
        END IF;
        key := quote_literal(part.model_key);
        canonical := 'woe_anchor_scores_v1_m' || part.model_id;
        IF part.relkind = 'p' THEN
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
            SELECT array_agg(t.relid::regclass) INTO nodes
            FROM pg_catalog.pg_partition_tree(part.oid) AS t WHERE t.relid <> part.oid;
            FOR node IN SELECT t.relid, t.parentrelid FROM pg_catalog.pg_partition_tree(part.oid) AS t
                        WHERE t.relid <> part.oid ORDER BY t.level DESC LOOP
                EXECUTE format('ALTER TABLE %s DETACH PARTITION %s', node.parentrelid::regclass, node.relid::regclass);
            END LOOP;
            EXECUTE format('ALTER TABLE ml.woe_anchor_scores_v1 DETACH PARTITION %s', part.oid::regclass);
            locals := NULL;
            FOR node IN SELECT c.oid FROM pg_catalog.pg_class AS c WHERE c.oid = ANY (nodes) AND c.relkind = 'r' LOOP
                PERFORM ml._woe_anchor_take_over(node.oid, owner, part.model_key);
                locals := concat_ws(' UNION ALL ', locals, format('SELECT * FROM %s', node.oid::regclass));
            END LOOP;
            fresh := format('woe_anchor_scores.%I', canonical || '_local');
            -- the local rows, read from tables that were just taken over: nothing of anyone's runs
            EXECUTE format('CREATE TABLE %s AS SELECT %s::text AS model_key, generation::int AS generation, '
                           'listing_id::bigint AS listing_id, t0::timestamptz AS t0, fold_id::int AS fold_id, '
                           'is_oof::boolean AS is_oof, woe_logit::float8 AS woe_logit, woe_p::float8 AS woe_p '
                           'FROM (%s) AS s', fresh, key,
                           coalesce(locals, 'SELECT * FROM ml.woe_anchor_scores_v1 WHERE false'));
            EXECUTE format('DROP TABLE %s CASCADE', part.oid::regclass);
            FOR node IN SELECT c.oid, c.relkind FROM pg_catalog.pg_class AS c WHERE c.oid = ANY (nodes) LOOP
                EXECUTE format('DROP %s %s CASCADE', CASE node.relkind WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
                               node.oid::regclass);
            END LOOP;
            EXECUTE format('ALTER TABLE %s OWNER TO %I', fresh, owner);
        ELSE
            PERFORM ml._woe_anchor_take_over(part.oid, owner, part.model_key);
            fresh := part.oid::regclass::text;
        END IF;
        EXECUTE format('ALTER TABLE %s RENAME TO %I', fresh, canonical);  -- free: renamed and swept above
        fresh := format('woe_anchor_scores.%I', canonical);
        IF NOT EXISTS (SELECT FROM pg_constraint WHERE conrelid = fresh::regclass AND contype = 'p') THEN
            EXECUTE format('ALTER TABLE %s ADD PRIMARY KEY (generation, listing_id, t0, model_key)', fresh);
        END IF;
        IF NOT EXISTS (SELECT FROM pg_constraint WHERE conrelid = fresh::regclass
                       AND conname = 'woe_anchor_scores_v1_fold_id_check') THEN
            EXECUTE format('ALTER TABLE %s ADD CONSTRAINT woe_anchor_scores_v1_fold_id_check CHECK (fold_id >= 0)', fresh);
        END IF;
        IF NOT EXISTS (SELECT FROM pg_constraint WHERE conrelid = fresh::regclass
                       AND conname = 'woe_anchor_scores_model_key_check') THEN
            EXECUTE format('ALTER TABLE %s ADD CONSTRAINT woe_anchor_scores_model_key_check CHECK (model_key = %s)',
                           fresh, key);
        END IF;
        EXECUTE format('ALTER TABLE %s ALTER COLUMN is_oof SET NOT NULL, ALTER COLUMN woe_logit SET NOT NULL, '
                       'ALTER COLUMN woe_p SET NOT NULL', fresh);
        IF part.relkind = 'p' THEN
            EXECUTE format('ALTER TABLE ml.woe_anchor_scores_v1 ATTACH PARTITION %s FOR VALUES IN (%s)', fresh, key);
        END IF;
    END LOOP;
END
$$;
DROP FUNCTION ml._woe_anchor_take_over(regclass, name, text);
-- 0.1.0 let trainers set the model-id sequence (to its maximum, say, so that no fit could take an id)
SELECT pg_catalog.setval('ml.woe_anchor_model_id_seq',
                         coalesce((SELECT max(r.model_id) FROM ml.woe_anchor_model_registry_v1 AS r), 1),
                         EXISTS (SELECT FROM ml.woe_anchor_model_registry_v1));

-- 0.1.0 let trainers write the artifact tables, take ids and create score tables: all revoked
-- here; grants.sql then re-applies the new model to every role that held the old one.
DO $$
DECLARE
    grantee regrole;
BEGIN
    FOR grantee IN SELECT DISTINCT a.grantee::regrole
                   FROM pg_catalog.pg_class AS c, aclexplode(c.relacl) AS a
                   WHERE c.oid IN ('ml.woe_anchor_model_registry_v1'::regclass, 'ml.woe_anchor_cuts_v1'::regclass,
                                   'ml.woe_anchor_map_v1'::regclass, 'ml.woe_anchor_model_id_seq'::regclass,
                                   'ml.woe_anchor_band_schemas'::regclass, 'ml.woe_anchor_bands'::regclass)
                     AND a.grantee <> 0 AND a.grantee <> c.relowner
                   UNION
                   SELECT DISTINCT a.grantee::regrole
                   FROM pg_catalog.pg_namespace AS n, aclexplode(n.nspacl) AS a
                   WHERE n.nspname = 'woe_anchor_scores' AND a.grantee <> 0 AND a.grantee <> n.nspowner LOOP
        EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ml.woe_anchor_model_registry_v1, '
                       'ml.woe_anchor_cuts_v1, ml.woe_anchor_map_v1, ml.woe_anchor_band_schemas, '
                       'ml.woe_anchor_bands FROM %s', grantee);
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
-- 0.1.0's internal routines in ml: their successors are in woe_anchor_internal (the two trigger
-- functions take their triggers along; the routines re-create them)
DROP FUNCTION IF EXISTS ml._woe_anchor_reraise(text, text, text, text);
DROP FUNCTION IF EXISTS ml._woe_anchor_load();
DROP FUNCTION IF EXISTS ml._woe_anchor_drop_scores() CASCADE;
DROP FUNCTION IF EXISTS ml._woe_anchor_dblink();
DROP FUNCTION IF EXISTS ml._woe_anchor_drop_shard_table(text, text);
DROP FUNCTION IF EXISTS ml._woe_anchor_band_schema_guard() CASCADE;
DROP FUNCTION IF EXISTS ml._woe_anchor_band_schema_problems(int, oid);
DROP FUNCTION IF EXISTS ml._woe_anchor_cron(text);
DROP FUNCTION IF EXISTS ml._woe_anchor_score_sql(oid, text);
DROP FUNCTION IF EXISTS ml._woe_anchor_model_bands(text);
-- the model list shows the notes
DROP FUNCTION IF EXISTS ml.woe_anchor_models();
DROP FUNCTION IF EXISTS ml._fit_woe_anchor(oid, timestamptz, int, float8, float8, float8, float8, float8[], text, boolean, boolean, boolean, boolean, int, boolean);
