-- Runs one pg_cron statement in pg_cron's database (cron.database_name). pg_cron is looked up
-- here, at call time: CREATE EXTENSION woe_anchor never needs it. From another database the
-- statement goes through dblink, to this server's socket, as the role running it, with the
-- search_path pinned. Internal: only the definer entry points below call it (as the extension's
-- owner), so the schema `cron` must be pg_cron's own, a member of the extension: one of that name
-- made by anyone else (where pg_cron is not created) would run its functions as that owner.
-- `exclusive` runs the statement after locking pg_cron's job table against every other exclusive
-- statement, in one transaction: what it reads of cron.job then stays true until it has written.
-- The lock (SHARE UPDATE EXCLUSIVE) conflicts with itself, not with pg_cron's own writes: here, in
-- pg_cron's database, it lasts the caller's transaction, and must not hold up others' cron jobs.
CREATE FUNCTION woe_anchor_internal.cron(statement text, exclusive boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
-- its conninfo quoting has backslashes: the same meaning whatever the caller's setting
SET standard_conforming_strings = on
AS $$
DECLARE
    cron_db text := current_setting('cron.database_name', true);
    dblink text;
    socket text := btrim(split_part(current_setting('unix_socket_directories'), ',', 1));
    conninfo text;
    query text;
    result text;
    pg_crons text := 'SELECT EXISTS (SELECT FROM pg_catalog.pg_depend AS d '
        'JOIN pg_catalog.pg_extension AS e ON e.oid = d.refobjid JOIN pg_catalog.pg_namespace AS n ON n.oid = d.objid '
        'WHERE d.classid = ''pg_catalog.pg_namespace''::pg_catalog.regclass '
        'AND d.refclassid = ''pg_catalog.pg_extension''::pg_catalog.regclass AND d.deptype = ''e'' '
        'AND e.extname = ''pg_cron'' AND n.nspname = ''cron'')::text';
BEGIN
    IF cron_db IS NULL THEN
        RAISE EXCEPTION 'pg_cron is not loaded on this server'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Add pg_cron to shared_preload_libraries, restart, and CREATE EXTENSION pg_cron in cron.database_name.';
    END IF;
    IF cron_db <> current_database() THEN
        dblink := woe_anchor_internal.dblink();
        IF dblink IS NULL THEN
            RAISE EXCEPTION 'pg_cron lives in database %, not in %: scheduling from here needs dblink', cron_db,
                current_database()
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'CREATE EXTENSION dblink in this database: pg_cron lives in database ' || cron_db
                             || ', and jobs for models in other databases are scheduled through dblink.';
        END IF;
        -- libpq values in single quotes, backslash-escaped
        SELECT string_agg(k || '=''' || replace(replace(v, '\', '\\'), '''', '\''') || '''', ' ')
        INTO conninfo
        FROM (VALUES ('dbname', cron_db), ('user', current_user::text), ('port', current_setting('port')),
                     ('host', CASE WHEN socket = '' THEN 'localhost' ELSE socket END),
                     ('options', '-c search_path=pg_catalog,pg_temp')) AS c (k, v);
    END IF;
    -- pg_cron's schema checked, then the statement run; over dblink in two connections (once
    -- pg_cron's schema is there, no role but a superuser can change it)
    IF exclusive THEN
        -- the lock, then the statement as a second one of the same string: one transaction, and
        -- the statement's snapshot taken after the wait (here and over dblink alike)
        statement := 'LOCK TABLE cron.job IN SHARE UPDATE EXCLUSIVE MODE; ' || statement;
    END IF;
    FOREACH query IN ARRAY ARRAY[pg_crons, statement] LOOP
        IF conninfo IS NULL THEN
            EXECUTE query INTO result;
        ELSE
            EXECUTE format('SELECT t.r FROM %s.dblink(%L, %L) AS t (r text)', dblink, conninfo, query) INTO result;
        END IF;
        IF query = pg_crons AND result <> 'true' THEN
            RAISE EXCEPTION 'pg_cron is loaded but not created in database %', cron_db
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'CREATE EXTENSION pg_cron in database ' || cron_db || '.';
        END IF;
    END LOOP;
    RETURN result;
END
$$;

-- SECURITY DEFINER: pg_cron lets only a superuser schedule a job for a role (and from another
-- database the statement needs a connection that asks no password). The job runs as the
-- ticket's role, in this database, and calls nothing but ml.fit_woe_anchor on the given source.
CREATE FUNCTION woe_anchor_internal.schedule(
    ticket uuid, job_name text, schedule text, source regclass, n_folds int, half_life_days float8, eps float8,
    slow_threshold_hours float8, min_duration_hours float8, dsold_thresholds float8[], activate boolean,
    band_schema_version int)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- parameters are written into the job's command as text: exactly
SET extra_float_digits = 3
AS $$
DECLARE
    who name := woe_anchor_internal.caller(ticket);
    relation text;
    command text;
    outcome jsonb;
BEGIN
    IF job_name IS NULL OR schedule IS NULL OR source IS NULL THEN
        RAISE EXCEPTION 'job_name, schedule and source must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM woe_anchor_internal.require_fittable(who, band_schema_version);
    SELECT format('%I.%I', n.nspname, c.relname) INTO relation
    FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace WHERE c.oid = source;
    command := format('CALL ml.fit_woe_anchor(source => %L::regclass, n_folds => %L::int, '
                      'half_life_days => %L::float8, eps => %L::float8, slow_threshold_hours => %L::float8, '
                      'min_duration_hours => %L::float8, dsold_thresholds => %L::float8[], activate => %L::boolean, '
                      'band_schema_version => %L::int)',
                      relation, n_folds, half_life_days, eps, slow_threshold_hours, min_duration_hours,
                      dsold_thresholds, activate, band_schema_version);
    -- pg_cron names a role's jobs across databases: scheduling that name would move the job of
    -- another database (a copy restored on this server, say) here. Checked and scheduled in one
    -- transaction that holds pg_cron's job table: two databases scheduling one name at the same
    -- time cannot both find it free.
    outcome := woe_anchor_internal.cron(format(
        'SELECT jsonb_build_object(''elsewhere'', e.db, ''job'', CASE WHEN e.db IS NULL '
        'THEN cron.schedule_in_database(%L, %L, %L, %L, %L) END)::text '
        'FROM (SELECT min(j.database) AS db FROM cron.job AS j '
        'WHERE j.jobname = %L AND j.username = %L AND j.database <> %L) AS e',
        job_name, schedule, command, current_database(), who, job_name, who, current_database()), exclusive => true)::jsonb;
    IF outcome ->> 'elsewhere' IS NOT NULL THEN
        RAISE EXCEPTION 'job % of role % fits in database %: pg_cron names a role''s jobs across databases',
            quote_literal(job_name), who, outcome ->> 'elsewhere'
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Choose another job_name here, or unschedule that one in database '
                         || (outcome ->> 'elsewhere') || '.';
    END IF;
    RETURN (outcome ->> 'job')::bigint;
END
$$;

-- What a scheduled fit would refuse, refused when it is scheduled (fit.check_schedule): the job's
-- name and schedule, the fit's learning parameters, its band schema and its source. A job that
-- could only fail is not made.
CREATE FUNCTION woe_anchor_internal.check_fit_parameters(job_name text, schedule text, source oid,
    n_folds int, half_life_days float8, eps float8, slow_threshold_hours float8, min_duration_hours float8,
    dsold_thresholds float8[], activate boolean, band_schema_version int)
RETURNS void
LANGUAGE plpython3u VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $woe_anchor_py$
@LOAD_PACKAGE@
woe_anchor.errors.reported(plpy, woe_anchor.fit.check_schedule, plpy, job_name, schedule, source, dict(
    n_folds=n_folds, half_life_days=half_life_days, eps=eps, slow_threshold_hours=slow_threshold_hours,
    min_duration_hours=min_duration_hours, dsold_thresholds=dsold_thresholds, model_key=None, activate=activate,
    oof=True, persist=True, replace=False), band_schema_version)
$woe_anchor_py$;

-- Schedules a fit with pg_cron under a job name (scheduling the same name again replaces the job).
-- The cutoff is not frozen: each run takes the default rule on the data of that moment. A run
-- that fails leaves the active model as it was and its error in cron.job_run_details.
CREATE FUNCTION ml.schedule_woe_anchor_fit(
    job_name text,
    schedule text,
    source regclass,
@LEARNING_PARAMETERS@,
    activate boolean DEFAULT true,
    band_schema_version int DEFAULT @DEFAULT:band_schema_version@)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    @ERROR_VARIABLES@
BEGIN
    PERFORM woe_anchor_internal.check_fit_parameters(job_name, schedule, source::oid, n_folds, half_life_days, eps,
                                                     slow_threshold_hours, min_duration_hours, dsold_thresholds,
                                                     activate, band_schema_version);
    RETURN woe_anchor_internal.schedule(woe_anchor_internal.ticket(), job_name, schedule, source, n_folds,
                                        half_life_days, eps, slow_threshold_hours, min_duration_hours,
                                        dsold_thresholds, activate, band_schema_version);
@RERAISE_AS_PLAIN_ERROR@
END
$$;

-- SECURITY DEFINER, as above: removes the ticket's role's job of that name in this database, never
-- another role's or another database's.
CREATE FUNCTION woe_anchor_internal.unschedule(ticket uuid, job_name text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN woe_anchor_internal.cron(format(
        'SELECT (count(cron.unschedule(j.jobid)) > 0)::text FROM cron.job AS j '
        'WHERE j.jobname = %L AND j.username = %L AND j.database = %L', job_name, woe_anchor_internal.caller(ticket),
        current_database()))::boolean;
END
$$;

-- Removes a scheduled fit of the calling role; false when there was none (so it can be re-run).
CREATE FUNCTION ml.unschedule_woe_anchor_fit(job_name text)
RETURNS boolean
LANGUAGE sql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT woe_anchor_internal.unschedule(woe_anchor_internal.ticket(), job_name)
$$;

COMMENT ON FUNCTION woe_anchor_internal.check_fit_parameters(text, text, oid, int, float8, float8, float8, float8, float8[], boolean, int) IS
    'woe_anchor internal: what a scheduled fit would refuse, refused when it is scheduled';
COMMENT ON FUNCTION woe_anchor_internal.cron(text, boolean) IS 'woe_anchor internal: runs a pg_cron statement in cron.database_name';
COMMENT ON FUNCTION woe_anchor_internal.schedule(uuid, text, text, regclass, int, float8, float8, float8, float8, float8[], boolean, int) IS
    'woe_anchor internal: schedules a fit as the ticket''s role';
COMMENT ON FUNCTION ml.schedule_woe_anchor_fit(text, text, regclass, int, float8, float8, float8, float8, float8[], boolean, int) IS
    'Schedule CALL ml.fit_woe_anchor with pg_cron (idempotent by job name); returns the pg_cron job id';
COMMENT ON FUNCTION woe_anchor_internal.unschedule(uuid, text) IS 'woe_anchor internal: removes a job of the ticket''s role';
COMMENT ON FUNCTION ml.unschedule_woe_anchor_fit(text) IS 'Remove a scheduled woe_anchor fit; false when there was none';
