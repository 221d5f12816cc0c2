-- Deleting (or truncating) registry rows drops the models' score partitions with them.
CREATE FUNCTION ml._woe_anchor_drop_scores() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    part regclass;
BEGIN
    IF TG_OP = 'DELETE' THEN
        EXECUTE format('DROP TABLE IF EXISTS ml.%I', 'woe_anchor_scores_v1_m' || OLD.model_id);
    ELSE
        FOR part IN SELECT inhrelid::regclass FROM pg_inherits
                    WHERE inhparent = 'ml.woe_anchor_scores_v1'::regclass LOOP
            EXECUTE format('DROP TABLE %s', part);
        END LOOP;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER woe_anchor_drop_scores_on_delete
    AFTER DELETE ON ml.woe_anchor_model_registry_v1
    FOR EACH ROW EXECUTE FUNCTION ml._woe_anchor_drop_scores();
CREATE TRIGGER woe_anchor_drop_scores_on_truncate
    AFTER TRUNCATE ON ml.woe_anchor_model_registry_v1
    FOR EACH STATEMENT EXECUTE FUNCTION ml._woe_anchor_drop_scores();

COMMENT ON FUNCTION ml._woe_anchor_drop_scores() IS
    'woe_anchor internal: drops the score partitions of deleted or truncated registry rows';

