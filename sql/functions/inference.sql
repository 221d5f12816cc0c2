-- Statement builders, in PL/Python: they read the model's artifacts and the source's columns.
CREATE FUNCTION woe_anchor_internal.score_sql(source oid, model_key text) RETURNS text
LANGUAGE plpython3u STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $woe_anchor_py$
@LOAD_PACKAGE@
return woe_anchor.errors.reported(plpy, woe_anchor.inference.score_sql, plpy, source, model_key)
$woe_anchor_py$;

-- Volatile: for a model whose scores live on shards it opens the guarded reads of them.
CREATE FUNCTION woe_anchor_internal.training_features_sql(model_key text, source oid) RETURNS text
LANGUAGE plpython3u VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $woe_anchor_py$
@LOAD_PACKAGE@
return woe_anchor.errors.reported(plpy, woe_anchor.inference.training_features_sql, plpy, model_key, source)
$woe_anchor_py$;

CREATE FUNCTION woe_anchor_internal.stored_scores_sql(model_key text) RETURNS text
LANGUAGE plpython3u VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $woe_anchor_py$
@LOAD_PACKAGE@
return woe_anchor.errors.reported(plpy, woe_anchor.inference.stored_scores_sql, plpy, model_key)
$woe_anchor_py$;

-- A model's stored TRAIN SOLD scores, wherever they live: its partition of ml.woe_anchor_scores_v1,
-- and for a model fitted with scores_on_shards the shards' tables, read with your user mappings.
CREATE FUNCTION ml.woe_anchor_stored_scores(model_key text)
RETURNS TABLE (generation int, listing_id bigint, t0 timestamptz, fold_id int, is_oof boolean,
               woe_logit float8, woe_p float8)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    @ERROR_VARIABLES@
BEGIN
    RETURN QUERY EXECUTE woe_anchor_internal.stored_scores_sql(model_key);
@END_SHARD_READS_AND_RERAISE@
END
$$;

CREATE FUNCTION woe_anchor_internal.reasons_sql(source oid, model_key text) RETURNS text
LANGUAGE plpython3u VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $woe_anchor_py$
@LOAD_PACKAGE@
return woe_anchor.errors.reported(plpy, woe_anchor.inference.reasons_sql, plpy, source, model_key)
$woe_anchor_py$;

-- Why a row scores what it scores: per band, its value and the WOE it adds (final mapping; with
-- the base logit they add up to the score), and on rows the model stored a score for, the WOE of
-- the out-of-fold mapping that scored it: per-band OOF features for a downstream model. Reason
-- codes are the bands with the largest WOE.
CREATE FUNCTION ml.woe_anchor_reasons(source regclass, model_key text DEFAULT NULL)
RETURNS TABLE (generation int, listing_id bigint, t0 timestamptz, band_name text, band_value text, woe float8,
               fold_id int, oof_woe float8)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    @ERROR_VARIABLES@
BEGIN
    RETURN QUERY EXECUTE woe_anchor_internal.reasons_sql(source::oid, model_key);
@END_SHARD_READS_AND_RERAISE@
END
$$;

CREATE FUNCTION woe_anchor_internal.compare(model_a text, model_b text, source oid, window_start timestamptz,
                                       window_end timestamptz)
RETURNS TABLE (metric text, a float8, b float8, a_minus_b float8, std_error float8, p_value float8)
LANGUAGE plpython3u VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
@TIMESTAMPS_AS_UTC_ISO@
SET jit = off
AS $woe_anchor_py$
@LOAD_PACKAGE@
return woe_anchor.errors.reported(plpy, woe_anchor.inference.compare, plpy, model_a, model_b, source,
                                  window_start, window_end)
$woe_anchor_py$;

-- Two models on the same labelled rows of a source (sold in the window; by default the 7 days
-- after the later of their cutoffs): rows compared, AUC of each with the DeLong standard error of
-- the paired difference, mean log loss of each with the standard error of the row-wise difference,
-- and two-sided p-values.
CREATE FUNCTION ml.woe_anchor_compare(model_a text, model_b text, source regclass,
                                      window_start timestamptz DEFAULT NULL, window_end timestamptz DEFAULT NULL)
RETURNS TABLE (metric text, a float8, b float8, a_minus_b float8, std_error float8, p_value float8)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    @ERROR_VARIABLES@
BEGIN
    RETURN QUERY SELECT * FROM woe_anchor_internal.compare(model_a, model_b, source::oid, window_start, window_end);
@RERAISE_AS_PLAIN_ERROR@
END
$$;

-- Closes the shard connections a training-features statement read through.
CREATE FUNCTION woe_anchor_internal.end_shard_reads() RETURNS void
LANGUAGE plpython3u VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $woe_anchor_py$
@LOAD_PACKAGE@
woe_anchor.sharded.end_shard_reads(plpy)
$woe_anchor_py$;


-- True while model `id` is still the model of `key`; else an error (40001): a statement built from
-- a model, and reading by its key what is stored (scores, the registry), would otherwise read a
-- replacement's, or nothing, and still answer. Evaluated once per statement, in its snapshot.
CREATE FUNCTION woe_anchor_internal.model_unchanged(key text, id bigint)
RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM ml.woe_anchor_model_registry_v1 AS r WHERE r.model_key = key AND r.model_id = id) THEN
        RAISE EXCEPTION 'model % was dropped or replaced while this statement was prepared', quote_literal(key)
            USING ERRCODE = 'serialization_failure', HINT = 'Run it again.';
    END IF;
    RETURN true;
END
$$;

-- Scores every row of any relation with the docs/contract.md input columns, with a stored model
-- (default: the active one) and nothing but its artifacts.
CREATE FUNCTION ml.woe_anchor_score(source regclass, model_key text DEFAULT NULL)
RETURNS SETOF ml.woe_anchor_score_row
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    @ERROR_VARIABLES@
BEGIN
    RETURN QUERY EXECUTE woe_anchor_internal.score_sql(source::oid, model_key);
@RERAISE_AS_PLAIN_ERROR@
END
$$;

-- The downstream trainer's feature: stored OOF scores on TRAIN SOLD rows, final-mapping scores
-- elsewhere, over the given source or, when its code is safe for you to run, the model's own.
CREATE FUNCTION ml.woe_anchor_training_features(model_key text DEFAULT NULL, source regclass DEFAULT NULL)
RETURNS TABLE (generation int, listing_id bigint, t0 timestamptz, split text, fold_id int, is_oof boolean,
               woe_anchor_logit_slow21 float8, woe_anchor_p_slow21 float8)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    @ERROR_VARIABLES@
BEGIN
    RETURN QUERY EXECUTE woe_anchor_internal.training_features_sql(model_key, source::oid);
@END_SHARD_READS_AND_RERAISE@
END
$$;

CREATE FUNCTION woe_anchor_internal.model_bands(model_key text)
RETURNS TABLE (band_position int, band_name text, column_name text, subset text, value_position int, band_value text)
LANGUAGE plpython3u STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $woe_anchor_py$
@LOAD_PACKAGE@
return woe_anchor.errors.reported(plpy, woe_anchor.inference.model_bands, plpy, model_key)
$woe_anchor_py$;

-- The bands of a model (default: the active one) and every value each can take, bands in the
-- order of its schema, values as people read them: the NULL label first, ladders from the
-- lowest input to the highest, a category's kept values, then __other__ and __null__.
CREATE FUNCTION ml.woe_anchor_model_bands(model_key text DEFAULT NULL)
RETURNS TABLE (band_position int, band_name text, column_name text, subset text, value_position int, band_value text)
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    @ERROR_VARIABLES@
BEGIN
    RETURN QUERY SELECT * FROM woe_anchor_internal.model_bands(model_key);
@RERAISE_AS_PLAIN_ERROR@
END
$$;


-- The per-row scoring functions' check of the model they are asked for: true for NULL (the
-- active model) and for a model of their band schema; an error for any other key, as every
-- function that takes a model key gives.
CREATE FUNCTION woe_anchor_internal.serves(model_key text, band_schema_version int)
RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    version int;
BEGIN
    IF model_key IS NULL THEN
        RETURN true;
    END IF;
    SELECT r.band_schema_version INTO version FROM ml.woe_anchor_model_registry_v1 AS r
    WHERE r.model_key = serves.model_key;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'model % does not exist', quote_literal(model_key)
            USING ERRCODE = 'no_data_found', HINT = 'List models with ml.woe_anchor_models().';
    END IF;
    IF version <> band_schema_version THEN
        RAISE EXCEPTION 'model % has band schema %, and this function scores band schema %',
            quote_literal(model_key), version, band_schema_version
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Score it with ml.woe_anchor_score(<source>, %L), or make views and functions '
                                'for schema %s: SELECT ml.woe_anchor_create_views(<source>, %s, name => ...);',
                                model_key, version, version);
    END IF;
    RETURN true;
END
$$;

-- The artifact assertions of the fail-closed view; true, or an error that says what is wrong.
CREATE FUNCTION ml.woe_anchor_assert_ready(band_schema_version int DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n_active int; key text; version int; n_cuts int; n_map int; n_bands int; n_global int;
BEGIN
    SELECT count(*), min(r.model_key), min(r.band_schema_version) INTO n_active, key, version
    FROM ml.woe_anchor_model_registry_v1 AS r WHERE r.is_active;
    IF n_active <> 1 THEN
        RAISE EXCEPTION 'woe_anchor is not ready: % active models (need exactly 1)', n_active
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Activate a model with ml.woe_anchor_activate(model_key).';
    END IF;
    IF version <> woe_anchor_assert_ready.band_schema_version THEN
        RAISE EXCEPTION 'woe_anchor is not ready: active model % has band schema %, these views were made for %',
            quote_literal(key), version, woe_anchor_assert_ready.band_schema_version
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = format('Recreate the views: SELECT ml.woe_anchor_create_views(<source>, %s);', version);
    END IF;
    SELECT count(*) INTO n_cuts FROM ml.woe_anchor_cuts_v1 AS c WHERE c.model_key = key AND c.fold_id IS NULL;
    SELECT count(*), count(DISTINCT m.band_name) INTO n_map, n_bands
    FROM ml.woe_anchor_map_v1 AS m WHERE m.model_key = key AND m.fold_id IS NULL;
    -- every learned row has a value of each band outside subsets: each has final map rows
    SELECT count(*) INTO n_global
    FROM ml.woe_anchor_model_registry_v1 AS r, jsonb_array_elements(r.band_schema -> 'bands') AS b
    WHERE r.model_key = key AND jsonb_typeof(b.value -> 'subset') = 'null';
    IF n_cuts <> 1 OR n_map = 0 OR n_bands < n_global THEN
        RAISE EXCEPTION 'woe_anchor is not ready: active model % has % final cuts rows (need 1), % final map rows, % bands (need at least %)',
            quote_literal(key), n_cuts, n_map, n_bands, n_global
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Refit with CALL ml.fit_woe_anchor(..., replace => true) or activate another model.';
    END IF;
    RETURN true;
END
$$;

COMMENT ON FUNCTION woe_anchor_internal.model_unchanged(text, bigint) IS 'woe_anchor internal: fails a statement whose model was replaced or dropped meanwhile';
COMMENT ON FUNCTION woe_anchor_internal.score_sql(oid, text) IS 'woe_anchor internal: the statement behind ml.woe_anchor_score';
COMMENT ON FUNCTION woe_anchor_internal.training_features_sql(text, oid) IS 'woe_anchor internal: the statement behind ml.woe_anchor_training_features';
COMMENT ON FUNCTION woe_anchor_internal.stored_scores_sql(text) IS 'woe_anchor internal: the statement behind ml.woe_anchor_stored_scores';
COMMENT ON FUNCTION ml.woe_anchor_stored_scores(text) IS 'A model''s stored TRAIN SOLD scores, on this server or on its shards';
COMMENT ON FUNCTION woe_anchor_internal.end_shard_reads() IS 'woe_anchor internal: closes the guarded reads of shard score tables';
COMMENT ON FUNCTION ml.woe_anchor_score(regclass, text) IS 'Score every row of source with a stored WOE anchor model (default: the active one)';
COMMENT ON FUNCTION ml.woe_anchor_training_features(text, regclass) IS 'Rows of the model''s training source with split, fold and the WOE anchor feature (OOF on TRAIN SOLD)';
COMMENT ON FUNCTION woe_anchor_internal.serves(text, int) IS 'woe_anchor internal: the model check of the per-row scoring functions';
COMMENT ON FUNCTION ml.woe_anchor_assert_ready(int) IS 'Raise unless the active WOE anchor model (of this band schema, when given) passes the artifact assertions; else true';
COMMENT ON FUNCTION woe_anchor_internal.model_bands(text) IS 'woe_anchor internal: the rows behind ml.woe_anchor_model_bands';
COMMENT ON FUNCTION ml.woe_anchor_model_bands(text) IS 'Bands of a WOE anchor model (default: the active one) and their values in schema order';
COMMENT ON FUNCTION woe_anchor_internal.reasons_sql(oid, text) IS 'woe_anchor internal: the statement behind ml.woe_anchor_reasons';
COMMENT ON FUNCTION ml.woe_anchor_reasons(regclass, text) IS 'Per row and band: its value, its WOE in the final mapping, and on stored rows its out-of-fold WOE';
COMMENT ON FUNCTION woe_anchor_internal.compare(text, text, oid, timestamptz, timestamptz) IS 'woe_anchor internal: the figures behind ml.woe_anchor_compare';
COMMENT ON FUNCTION ml.woe_anchor_compare(text, text, regclass, timestamptz, timestamptz) IS 'Two models on the same labelled rows: AUC (DeLong) and log loss, each, their difference, its standard error and p-value';
