CREATE FUNCTION woe_anchor_internal.drift(source oid, window_start timestamptz, window_end timestamptz,
                                         model_key text)
RETURNS TABLE (band_name text, band_value text, train_rows bigint, window_rows bigint, train_share float8,
               window_share float8, psi_term float8, band_psi float8, reading text, unseen boolean)
LANGUAGE plpython3u VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
SET jit = off
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

COMMENT ON FUNCTION woe_anchor_internal.drift(oid, timestamptz, timestamptz, text) IS 'woe_anchor internal: the figures behind ml.woe_anchor_drift';
COMMENT ON FUNCTION ml.woe_anchor_drift(regclass, timestamptz, timestamptz, text) IS
    'Per band value of a model: training vs. window shares and PSI; per band the PSI and its reading (stable, moderate, major)';
