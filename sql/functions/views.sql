CREATE FUNCTION woe_anchor_internal.create_views(source oid, band_schema_version int, guard text, replace_views boolean,
                                            name text)
RETURNS void
LANGUAGE plpython3u VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
-- the guard is SQL text, read again when the views are re-created: the same meaning in every session
SET standard_conforming_strings = on
AS $woe_anchor_py$
@LOAD_PACKAGE@
woe_anchor.errors.reported(plpy, woe_anchor.views.create_views, plpy, source, band_schema_version, guard,
                           replace_views, name)
$woe_anchor_py$;

-- Creates or replaces the live views over your source (they follow the active model), and its
-- per-row scoring functions ml.woe_anchor_scores_of, ml.woe_anchor_logit and ml.woe_anchor_p.
-- Needs CREATE on ml: an administrator's. `name` names the set (ml.woe_anchor_<name>_bands,
-- _scores, _train; NULL: the Python trainer's view names). `guard` is your SQL that every query
-- of the train view runs first (NULL keeps the one recorded, '' removes it); views woe_anchor did
-- not make are replaced only with replace_views (docs/reference.md, "Live views").
CREATE FUNCTION ml.woe_anchor_create_views(source regclass, band_schema_version int DEFAULT NULL,
                                           guard text DEFAULT NULL, replace_views boolean DEFAULT false,
                                           name text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    @ERROR_VARIABLES@
BEGIN
    PERFORM woe_anchor_internal.create_views(source::oid, band_schema_version, guard, replace_views, name);
@RERAISE_AS_PLAIN_ERROR@
END
$$;

CREATE FUNCTION woe_anchor_internal.create_source_view(name text, relations oid[], columns text, band_schema_version int,
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
    RETURN woe_anchor_internal.create_source_view(name, relations::oid[], columns::text, band_schema_version,
                                             replace_views);
@RERAISE_AS_PLAIN_ERROR@
END
$$;

-- The per-row scoring functions woe_anchor made (recorded by name in ml.woe_anchor_views; each
-- name has one signature), those of rows of `source` when given. Read from the catalog, so a
-- renamed or dropped source or type never makes a recorded name fail to resolve.
CREATE FUNCTION woe_anchor_internal.row_functions(source oid DEFAULT NULL)
RETURNS TABLE (routine regprocedure, set_name text)
LANGUAGE sql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT p.oid::regprocedure, v.set_name
FROM ml.woe_anchor_views AS v
JOIN pg_proc AS p ON p.pronamespace = 'ml'::regnamespace AND format('ml.%I', p.proname) = v.view_name
WHERE v.kind = 'function'
  AND (row_functions.source IS NULL
       OR p.proargtypes[0] = (SELECT c.reltype FROM pg_class AS c WHERE c.oid = row_functions.source))
$$;

-- Drops the live views and per-row functions woe_anchor made over source (every set over it), or
-- everything it made (source views too) when source is NULL, as recorded in ml.woe_anchor_views,
-- and nothing else; returns their names.
CREATE FUNCTION ml.woe_anchor_drop_views(source regclass DEFAULT NULL)
RETURNS SETOF text
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v record;
    named text := CASE WHEN source IS NOT NULL
                       THEN (SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class AS c
                             JOIN pg_namespace AS n ON n.oid = c.relnamespace WHERE c.oid = source) END;
    -- the sets to drop ('' for the default set): those whose functions take source's rows, or
    -- whose views were recorded over it
    sets text[] := (SELECT array_agg(DISTINCT coalesce(s.set_name, ''))
                    FROM (SELECT f.set_name FROM woe_anchor_internal.row_functions(source) AS f
                          UNION ALL
                          SELECT w.set_name FROM ml.woe_anchor_views AS w
                          WHERE w.kind <> 'source' AND (named IS NULL OR w.source = named)) AS s);
    functions text[];
BEGIN
    -- a relation that is gone names no set: never read as NULL, "every set"
    IF source IS NOT NULL AND named IS NULL THEN
        RAISE EXCEPTION 'relation with OID % does not exist', source::oid USING ERRCODE = 'undefined_table',
            HINT = 'Name a relation that exists, or pass NULL to drop every view set woe_anchor made. The records '
                   'of a set whose source was dropped go with ml.woe_anchor_drop_views() (every set), or once a '
                   'relation of that name exists again.';
    END IF;
    -- the train view reads the scores view, which reads the bands view; the functions take the
    -- row type of the source, which may be a source view
    FOR v IN SELECT w.view_name, w.kind FROM ml.woe_anchor_views AS w
             WHERE w.kind IN ('train', 'scores', 'bands') AND coalesce(w.set_name, '') = ANY (sets)
             ORDER BY array_position(ARRAY['train', 'scores', 'bands'], w.kind), w.view_name LOOP
        RETURN NEXT woe_anchor_internal.drop_view(v.view_name);
    END LOOP;
    -- one statement: the logit and p functions call scores_of
    SELECT array_agg(f.routine::text ORDER BY f.routine::text) INTO functions
    FROM woe_anchor_internal.row_functions() AS f WHERE coalesce(f.set_name, '') = ANY (sets);
    IF functions IS NOT NULL THEN
        EXECUTE format('DROP FUNCTION %s', array_to_string(functions, ', '));
        RETURN QUERY SELECT unnest(functions);
    END IF;
    DELETE FROM ml.woe_anchor_views AS w WHERE w.kind = 'function' AND coalesce(w.set_name, '') = ANY (sets);
    FOR v IN SELECT w.view_name FROM ml.woe_anchor_views AS w WHERE w.kind = 'source' AND named IS NULL
             ORDER BY w.view_name LOOP
        RETURN NEXT woe_anchor_internal.drop_view(v.view_name);
    END LOOP;
END
$$;

-- Drops one recorded view (if it is still there) and forgets it; returns its name.
CREATE FUNCTION woe_anchor_internal.drop_view(view_name text)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF to_regclass(view_name) IS NOT NULL THEN
        EXECUTE format('DROP VIEW %s', view_name);
    END IF;
    DELETE FROM ml.woe_anchor_views AS w WHERE w.view_name = drop_view.view_name;
    RETURN view_name;
END
$$;

COMMENT ON FUNCTION woe_anchor_internal.create_views(oid, int, text, boolean, text) IS 'woe_anchor internal: creates the live views';
COMMENT ON FUNCTION ml.woe_anchor_create_views(regclass, int, text, boolean, text) IS
    'Create or replace the live band and score views, and the per-row scoring functions, over source for a band schema (default: the active model''s)';
COMMENT ON FUNCTION woe_anchor_internal.create_source_view(text, oid[], text, int, boolean) IS
    'woe_anchor internal: creates a source view';
COMMENT ON FUNCTION ml.woe_anchor_create_source_view(text, regclass[], jsonb, int, boolean) IS
    'Create a view giving the source contract''s columns from your relations (joined on their keys, columns mapped)';
COMMENT ON FUNCTION woe_anchor_internal.row_functions(oid) IS 'woe_anchor internal: the per-row scoring functions woe_anchor made';
COMMENT ON FUNCTION woe_anchor_internal.drop_view(text) IS 'woe_anchor internal: drops one recorded view';
COMMENT ON FUNCTION ml.woe_anchor_drop_views(regclass) IS 'Drop the live views and per-row functions woe_anchor made over source (NULL: all it made); returns their names';
