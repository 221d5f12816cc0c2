-- The fit itself, in PL/Python: takes the source as an OID so name resolution is the caller's.
CREATE FUNCTION woe_anchor_internal.fit(
    source oid, cutoff timestamptz, n_folds int, half_life_days float8, eps float8,
    slow_threshold_hours float8, min_duration_hours float8, dsold_thresholds float8[],
    model_key text, activate boolean, oof boolean, persist boolean, replace boolean,
    band_schema_version int, scores_on_shards boolean)
RETURNS text
LANGUAGE plpython3u VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
-- the read of the rows and the scores' write compile past a size (passes.compiled_pass), nothing else does
@COMPILED_PASSES@
-- the few sorts and hash tables of a fit stay in memory up to this, whatever N is
SET work_mem = '64MB'
-- interval math zone-free, and the arguments' text unambiguous
@TIMESTAMPS_AS_UTC_ISO@
SET standard_conforming_strings = on
AS $woe_anchor_py$
@LOAD_PACKAGE@
return woe_anchor.fit.fit(
    plpy, woe_anchor.VERSION, woe_anchor.CODE_SHA256, source=source, cutoff=cutoff,
    n_folds=n_folds, half_life_days=half_life_days, eps=eps,
    slow_threshold_hours=slow_threshold_hours, min_duration_hours=min_duration_hours,
    dsold_thresholds=dsold_thresholds, model_key=model_key, activate=activate, oof=oof,
    persist=persist, replace=replace, band_schema_version=band_schema_version,
    scores_on_shards=scores_on_shards)
$woe_anchor_py$;

-- Public entry point: fits, scores out-of-fold and persists a model in the caller's transaction.
CREATE PROCEDURE ml.fit_woe_anchor(
    source regclass,
    cutoff timestamptz DEFAULT NULL,
@LEARNING_PARAMETERS@,
    INOUT model_key text DEFAULT NULL,
    activate boolean DEFAULT true,
    oof boolean DEFAULT true,
    persist boolean DEFAULT true,
    replace boolean DEFAULT false,
    band_schema_version int DEFAULT @DEFAULT:band_schema_version@,
    scores_on_shards boolean DEFAULT NULL)
LANGUAGE plpgsql SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    @ERROR_VARIABLES@
BEGIN
    model_key := woe_anchor_internal.fit(source::oid, cutoff, n_folds, half_life_days, eps,
        slow_threshold_hours, min_duration_hours, dsold_thresholds, model_key, activate, oof,
        persist, replace, band_schema_version, scores_on_shards);
@RERAISE_AS_PLAIN_ERROR@
END
$$;

COMMENT ON FUNCTION woe_anchor_internal.fit(oid, timestamptz, int, float8, float8, float8, float8, float8[], text, boolean, boolean, boolean, boolean, int, boolean)
    IS 'woe_anchor internal: the fit behind ml.fit_woe_anchor';
COMMENT ON PROCEDURE ml.fit_woe_anchor(regclass, timestamptz, int, float8, float8, float8, float8, float8[], text, boolean, boolean, boolean, boolean, int, boolean)
    IS 'Fit a slow21 WOE anchor on source: out-of-fold scores, final and per-fold maps, persisted in this transaction; returns model_key';
