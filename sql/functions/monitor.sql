CREATE FUNCTION woe_anchor_internal.drift(source oid, window_start timestamptz, window_end timestamptz,
                                         model_key text)
RETURNS TABLE (band_name text, band_value text, train_rows bigint, window_rows bigint, train_share float8,
               window_share float8, psi_term float8, band_psi float8, reading text, unseen boolean)
LANGUAGE plpython3u VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
@TIMESTAMPS_AS_UTC_ISO@
@COMPILED_PASSES@
-- the pass's hash tables stay in memory (a sort or a spill to disk costs more than the scoring)
SET work_mem = '64MB'
AS $woe_anchor_py$
@LOAD_PACKAGE@
return woe_anchor.errors.reported(plpy, woe_anchor.monitor.drift, plpy, source, window_start, window_end, model_key)
$woe_anchor_py$;

-- Drift of the live population from what a model (default: the active one) learned from: per band
-- value, the rows and shares in its final fit and among the source's rows with t0 in the window,
-- the PSI term; per band, the PSI (shares floored at 0.0001) and its reading: stable below 0.1,
-- moderate to 0.25, major above. Values the model never saw are marked unseen. One pass over the
-- window.
CREATE FUNCTION ml.woe_anchor_drift(source regclass, window_start timestamptz, window_end timestamptz,
                                    model_key text DEFAULT NULL)
RETURNS TABLE (band_name text, band_value text, train_rows bigint, window_rows bigint, train_share float8,
               window_share float8, psi_term float8, band_psi float8, reading text, unseen boolean)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    @ERROR_VARIABLES@
BEGIN
    RETURN QUERY SELECT * FROM woe_anchor_internal.drift(source::oid, window_start, window_end, model_key);
@RERAISE_AS_PLAIN_ERROR@
END
$$;

CREATE FUNCTION woe_anchor_internal.realized(source oid, model_key text, since timestamptz)
RETURNS TABLE (week date, n_rows bigint, n_slow21 bigint, auc float8, logloss float8, mean_p float8,
               observed_rate float8)
LANGUAGE plpython3u VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
@TIMESTAMPS_AS_UTC_ISO@
@COMPILED_PASSES@
-- the pass's hash tables stay in memory (a sort or a spill to disk costs more than the scoring)
SET work_mem = '64MB'
AS $woe_anchor_py$
@LOAD_PACKAGE@
return woe_anchor.errors.reported(plpy, woe_anchor.monitor.realized, plpy, source, model_key, since)
$woe_anchor_py$;

-- A model's (default: the active one's) realized performance: the source's listings created since
-- `since` (default: its cutoff) whose label is settled (sold, or unsold past its label's threshold),
-- scored with its final mapping, per UTC week of t0: rows, slow21 rows, AUC, log loss, mean
-- predicted P(slow21) and the observed rate.
CREATE FUNCTION ml.woe_anchor_realized(source regclass, model_key text DEFAULT NULL, since timestamptz DEFAULT NULL)
RETURNS TABLE (week date, n_rows bigint, n_slow21 bigint, auc float8, logloss float8, mean_p float8,
               observed_rate float8)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    @ERROR_VARIABLES@
BEGIN
    RETURN QUERY SELECT * FROM woe_anchor_internal.realized(source::oid, model_key, since);
@RERAISE_AS_PLAIN_ERROR@
END
$$;

CREATE FUNCTION woe_anchor_internal.monitor(source oid, model_key text, window_days float8, psi_limit float8,
                                           auc_drop float8, min_rows int, channel text)
RETURNS TABLE (kind text, subject text, value float8, threshold float8)
LANGUAGE plpython3u VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
@TIMESTAMPS_AS_UTC_ISO@
@COMPILED_PASSES@
SET work_mem = '64MB'  -- as drift's and realized's
AS $woe_anchor_py$
@LOAD_PACKAGE@
return woe_anchor.errors.reported(plpy, woe_anchor.monitor.monitor, plpy, source, model_key, window_days, psi_limit,
                                  auc_drop, min_rows, channel)
$woe_anchor_py$;

-- SECURITY DEFINER: records what a monitor run measured (the caller's figures, attributed to it).
-- Any trainer may monitor any model (the active one is often another role's), but the figures are
-- its caller's claim, and measured with its rights: each record is seen only by the role that made
-- it and its members (row-level security), and a week another role recorded is replaced only by that
-- role, a role that may manage it, or one that may manage the model. Its alerts go to `channel`
-- (NOTIFY, delivered at commit) as their ids: any role that can connect may LISTEN, so the figures
-- stay in ml.woe_anchor_alerts, for the roles that may read them.
CREATE FUNCTION woe_anchor_internal.record_monitoring(ticket uuid, run jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who name := woe_anchor_internal.caller(ticket);
    model text := run ->> 'model_key';
    owner name;
    monitored_id bigint;
    manages boolean;
    alert_ids bigint[];
BEGIN
    SELECT r.fitted_by, r.model_id INTO owner, monitored_id FROM ml.woe_anchor_model_registry_v1 AS r
    WHERE r.model_key = model FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no model %', quote_literal(model)
            USING ERRCODE = 'no_data_found', HINT = 'List models with ml.woe_anchor_models().';
    END IF;
    -- the run measured one model: not the one that replaced it under its key meanwhile
    IF (run ->> 'model_id')::bigint IS DISTINCT FROM monitored_id THEN
        RAISE EXCEPTION 'model % was replaced while it was monitored', quote_literal(model)
            USING ERRCODE = 'serialization_failure', HINT = 'Run the monitor again.';
    END IF;
    manages := woe_anchor_internal.may_manage(who, owner);
    INSERT INTO ml.woe_anchor_realized AS h (model_key, week, n_rows, n_slow21, auc, logloss, mean_p, observed_rate,
                                             recorded_by)
    SELECT model, w.week, w.rows, w.slow21_rows, w.auc, w.logloss, w.mean_p, w.observed_rate, who
    FROM jsonb_to_recordset(run -> 'weeks') AS w (week date, rows bigint, slow21_rows bigint, auc float8,
                                                  logloss float8, mean_p float8, observed_rate float8)
    ON CONFLICT (model_key, week) DO UPDATE SET n_rows = EXCLUDED.n_rows, n_slow21 = EXCLUDED.n_slow21,
        auc = EXCLUDED.auc, logloss = EXCLUDED.logloss, mean_p = EXCLUDED.mean_p,
        observed_rate = EXCLUDED.observed_rate, recorded_by = who, recorded_at = now()
    WHERE manages OR h.recorded_by = who OR woe_anchor_internal.may_manage(who, h.recorded_by);
    INSERT INTO ml.woe_anchor_psi (model_key, at, window_days, band_name, psi, recorded_by)
    SELECT model, now(), (run ->> 'window_days')::float8, b.key, (b.value #>> '{}')::float8, who
    FROM jsonb_each(run -> 'psi') AS b;
    WITH raised AS (
        INSERT INTO ml.woe_anchor_alerts (by_role, model_key, model_id, kind, subject, value, threshold)
        SELECT who, model, monitored_id, a.kind, a.subject, a.value, a.threshold
        FROM jsonb_to_recordset(run -> 'alerts') AS a (kind text, subject text, value float8, threshold float8)
        RETURNING id)
    SELECT array_agg(raised.id ORDER BY raised.id) INTO alert_ids FROM raised;
    IF run ->> 'channel' IS NOT NULL AND alert_ids IS NOT NULL THEN
        PERFORM pg_notify(run ->> 'channel', jsonb_build_object('alert_ids', alert_ids)::text);
    END IF;
END
$$;

-- Checks a model (default: the active one) against the source: drift of the last `window_days`
-- (an alert per band whose PSI exceeds `psi_limit`) and realized performance since its cutoff
-- (recorded in ml.woe_anchor_realized; an alert per week of at least `min_rows` settled rows whose
-- AUC falls more than `auc_drop` below the model's OOF AUC); each band's PSI is recorded in
-- ml.woe_anchor_psi. Alerts go to ml.woe_anchor_alerts and,
-- at commit, their ids to NOTIFY `channel` (NULL: none). Returns them. What it records is the
-- caller's: it replaces no week another role recorded unless the caller may manage that role or the
-- model. Schedule it with pg_cron.
CREATE FUNCTION ml.woe_anchor_monitor(source regclass, model_key text DEFAULT NULL, window_days float8 DEFAULT 7,
                                      psi_limit float8 DEFAULT 0.25, auc_drop float8 DEFAULT 0.05,
                                      min_rows int DEFAULT 200, channel text DEFAULT 'woe_anchor')
RETURNS TABLE (kind text, subject text, value float8, threshold float8)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    @ERROR_VARIABLES@
BEGIN
    RETURN QUERY SELECT * FROM woe_anchor_internal.monitor(source::oid, model_key, window_days, psi_limit, auc_drop,
                                                          min_rows, channel);
@RERAISE_AS_PLAIN_ERROR@
END
$$;

COMMENT ON FUNCTION woe_anchor_internal.realized(oid, text, timestamptz) IS 'woe_anchor internal: the figures behind ml.woe_anchor_realized';
COMMENT ON FUNCTION ml.woe_anchor_realized(regclass, text, timestamptz) IS
    'Realized AUC, log loss and calibration of a model per week of settled listings created since its cutoff';
COMMENT ON FUNCTION woe_anchor_internal.monitor(oid, text, float8, float8, float8, int, text) IS 'woe_anchor internal: the check behind ml.woe_anchor_monitor';
COMMENT ON FUNCTION woe_anchor_internal.record_monitoring(uuid, jsonb) IS 'woe_anchor internal: records a monitor run for the ticket''s role';
COMMENT ON FUNCTION ml.woe_anchor_monitor(regclass, text, float8, float8, float8, int, text) IS
    'Drift and realized performance of a model, recorded, with alerts past thresholds (table and NOTIFY)';
COMMENT ON FUNCTION woe_anchor_internal.drift(oid, timestamptz, timestamptz, text) IS 'woe_anchor internal: the figures behind ml.woe_anchor_drift';
COMMENT ON FUNCTION ml.woe_anchor_drift(regclass, timestamptz, timestamptz, text) IS
    'Per band value of a model: training vs. window shares and PSI; per band the PSI and its reading (stable, moderate, major)';
