CREATE FUNCTION woe_anchor_internal.import_trainer(legacy_schema name)
RETURNS TABLE (model_key text, outcome text, mapped text)
LANGUAGE plpython3u VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
SET woe_anchor.artifact_write = on
SET TimeZone = 'UTC'
-- check constraints of the trainer's tables are never planned
SET constraint_exclusion = partition
AS $woe_anchor_py$
@LOAD_PACKAGE@
return woe_anchor.legacy.import_trainer(plpy, woe_anchor.VERSION, legacy_schema)
$woe_anchor_py$;

-- Adopts the models of the Python trainer, whose tables were moved out of the way into
-- legacy_schema before CREATE EXTENSION (README, "Migrating from the Python trainer"): keys,
-- maps, cuts, scores and the model its views served, with the trainer's quirks mapped; one row
-- per legacy model says what happened to it. Superusers only.
CREATE FUNCTION ml.woe_anchor_import_trainer(legacy_schema name)
RETURNS TABLE (model_key text, outcome text, mapped text)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    @ERROR_VARIABLES@
BEGIN
    RETURN QUERY SELECT * FROM woe_anchor_internal.import_trainer(legacy_schema);
@RERAISE_AS_PLAIN_ERROR@
END
$$;

COMMENT ON FUNCTION woe_anchor_internal.import_trainer(name) IS 'woe_anchor internal: the import behind ml.woe_anchor_import_trainer';
COMMENT ON FUNCTION ml.woe_anchor_import_trainer(name) IS
    'Import the Python trainer''s models (tables moved to legacy_schema); one row per legacy model says what was mapped';
