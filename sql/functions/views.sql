CREATE FUNCTION ml._woe_anchor_create_views(source oid, band_schema_version int, guard text, replace_views boolean)
RETURNS void
LANGUAGE plpython3u VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $woe_anchor_py$
@LOAD_PACKAGE@
woe_anchor.errors.reported(plpy, woe_anchor.views.create_views, plpy, source, band_schema_version, guard,
                           replace_views)
$woe_anchor_py$;

-- Creates or replaces the live views over your source (they follow the active model). Needs CREATE
-- on ml: an administrator's. `guard` is your SQL that every query of the train view runs first
-- (NULL keeps the one recorded, '' removes it); views woe_anchor did not make are replaced only
-- with replace_views (README, "Live views").
CREATE FUNCTION ml.woe_anchor_create_views(source regclass, band_schema_version int DEFAULT NULL,
                                           guard text DEFAULT NULL, replace_views boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    @ERROR_VARIABLES@
BEGIN
    PERFORM ml._woe_anchor_create_views(source::oid, band_schema_version, guard, replace_views);
@RERAISE_AS_PLAIN_ERROR@
END
$$;

CREATE FUNCTION ml._woe_anchor_create_source_view(name text, relations oid[], columns text, band_schema_version int,
                                                  replace_views boolean)
RETURNS text
LANGUAGE plpython3u VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $woe_anchor_py$
@LOAD_PACKAGE@
return woe_anchor.errors.reported(plpy, woe_anchor.views.create_source_view, plpy, name, relations, columns,
                                  band_schema_version, replace_views)
$woe_anchor_py$;

-- A view that gives the source contract's columns from your own relations, joined on their keys and
-- with columns mapped by name ({"t0": ["t0", "edited_date"], "sold_time": "sold_date"}): fit,
-- schedule, score and create the live views over it. Returns its name.
CREATE FUNCTION ml.woe_anchor_create_source_view(name text, relations regclass[], columns jsonb DEFAULT '{}',
                                                 band_schema_version int DEFAULT 1,
                                                 replace_views boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    @ERROR_VARIABLES@
BEGIN
    RETURN ml._woe_anchor_create_source_view(name, relations::oid[], columns::text, band_schema_version,
                                             replace_views);
@RERAISE_AS_PLAIN_ERROR@
END
$$;

-- Drops the views woe_anchor created (recorded in ml.woe_anchor_views), and nothing else.
CREATE FUNCTION ml.woe_anchor_drop_views()
RETURNS SETOF text
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v record;
BEGIN
    -- the train view reads the scores view, which reads the bands view, which may read a source view
    FOR v IN SELECT w.view_name FROM ml.woe_anchor_views AS w
             ORDER BY array_position(ARRAY['train', 'scores', 'bands', 'source'], w.kind), w.view_name LOOP
        IF to_regclass(v.view_name) IS NOT NULL THEN
            EXECUTE format('DROP VIEW %s', v.view_name);
        END IF;
        DELETE FROM ml.woe_anchor_views AS w WHERE w.view_name = v.view_name;
        RETURN NEXT v.view_name;
    END LOOP;
END
$$;

COMMENT ON FUNCTION ml._woe_anchor_create_views(oid, int, text, boolean) IS 'woe_anchor internal: creates the live views';
COMMENT ON FUNCTION ml.woe_anchor_create_views(regclass, int, text, boolean) IS
    'Create or replace the live band and score views over source for a band schema (default: the active model''s)';
COMMENT ON FUNCTION ml._woe_anchor_create_source_view(text, oid[], text, int, boolean) IS
    'woe_anchor internal: creates a source view';
COMMENT ON FUNCTION ml.woe_anchor_create_source_view(text, regclass[], jsonb, int, boolean) IS
    'Create a view giving the source contract''s columns from your relations (joined on their keys, columns mapped)';
COMMENT ON FUNCTION ml.woe_anchor_drop_views() IS 'Drop the views woe_anchor created; returns their names';
