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
-- of a registry row, as a plain table that is not yet a partition, under that row's key.
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
    WHERE c.relnamespace = 'woe_anchor_scores'::regnamespace AND c.relkind = 'r' AND NOT c.relispartition
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
