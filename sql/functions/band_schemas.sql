-- A band schema as one JSON document: the schema row and its bands in position order.
-- The fit reads schemas through this and stores the document with the model.
CREATE FUNCTION ml.woe_anchor_band_schema(version int)
RETURNS jsonb
LANGUAGE sql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT jsonb_build_object(
           'version', s.version, 'description', s.description, 'subsets', s.subsets, 'learned', s.learned,
           'bands', coalesce((SELECT jsonb_agg(jsonb_build_object(
                                  'position', b.position, 'band_name', b.band_name, 'column_name', b.column_name,
                                  'subset', b.subset, 'rule', b.rule) ORDER BY b.position, b.band_name)
                              FROM ml.woe_anchor_bands AS b WHERE b.schema_version = s.version), '[]'::jsonb))
FROM ml.woe_anchor_band_schemas AS s
WHERE s.version = woe_anchor_band_schema.version
$$;

-- Keeps every model scorable with the schema it was fitted with: schema 1 never changes, and a
-- schema a model uses only takes back rows that model recorded (what a restore re-inserts).
-- A schema is its creator's: another role (not a member, not a superuser) cannot change it.
CREATE FUNCTION woe_anchor_internal.band_schema_guard()
RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    target int;
    used text;
    owner name;
    super boolean := (SELECT r.rolsuper FROM pg_roles AS r WHERE r.rolname = current_user);
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        RAISE EXCEPTION 'band schemas cannot be truncated: schema 1 ships with woe_anchor and models use theirs'
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'Delete the rows of unused schemas instead.';
    END IF;
    -- a new schema is its inserter's (a superuser restoring a dump keeps the recorded creator)
    IF TG_TABLE_NAME = 'woe_anchor_band_schemas' AND TG_OP <> 'DELETE' AND NOT super THEN
        NEW.created_by := CASE WHEN TG_OP = 'INSERT' THEN current_user ELSE OLD.created_by END;
    END IF;
    FOR target IN SELECT DISTINCT v FROM unnest(ARRAY[
            CASE WHEN TG_OP <> 'INSERT' THEN (to_jsonb(OLD) ->> TG_ARGV[0])::int END,
            CASE WHEN TG_OP <> 'DELETE' THEN (to_jsonb(NEW) ->> TG_ARGV[0])::int END]) AS v
        WHERE v IS NOT NULL LOOP
        IF target = 1 THEN
            RAISE EXCEPTION 'band schema 1 ships with woe_anchor and cannot be changed'
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Copy it and edit the copy: SELECT ml.woe_anchor_copy_band_schema(1, 2);';
        END IF;
        IF TG_OP = 'INSERT' AND TG_TABLE_NAME = 'woe_anchor_band_schemas' THEN
            CONTINUE;  -- a new schema: no model can use it yet
        END IF;
        -- a schema is its creator's to edit (or a member's, or a superuser's)
        SELECT s.created_by INTO owner FROM ml.woe_anchor_band_schemas AS s WHERE s.version = target;
        IF owner IS NOT NULL AND NOT woe_anchor_internal.may_manage(current_user, owner) THEN
            RAISE EXCEPTION 'permission denied to change band schema %: it was created by %', target, owner
                USING ERRCODE = 'insufficient_privilege',
                      HINT = format('Copy it and edit the copy: SELECT ml.woe_anchor_copy_band_schema(%s, <new version>);',
                                    target);
        END IF;
        -- waits for a fit that is reading this schema (it holds FOR SHARE) and then sees its model
        PERFORM FROM ml.woe_anchor_band_schemas AS s WHERE s.version = target FOR UPDATE;
        SELECT string_agg(quote_literal(r.model_key), ', ' ORDER BY r.model_key) INTO used
        FROM ml.woe_anchor_model_registry_v1 AS r
        WHERE r.band_schema_version = target
          AND NOT (TG_OP = 'INSERT' AND EXISTS (
                   SELECT FROM jsonb_array_elements(r.band_schema -> 'bands') AS e
                   WHERE e.value = to_jsonb(NEW) - TG_ARGV[0]));
        IF used IS NOT NULL THEN
            RAISE EXCEPTION 'band schema % is used by model(s) %: it cannot change', target, used
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = format('Copy it and edit the copy: SELECT ml.woe_anchor_copy_band_schema(%s, <new version>);',
                                    target);
        END IF;
    END LOOP;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;

CREATE TRIGGER woe_anchor_band_schemas_guard
    BEFORE INSERT OR UPDATE OR DELETE ON ml.woe_anchor_band_schemas
    FOR EACH ROW EXECUTE FUNCTION woe_anchor_internal.band_schema_guard('version');
CREATE TRIGGER woe_anchor_bands_guard
    BEFORE INSERT OR UPDATE OR DELETE ON ml.woe_anchor_bands
    FOR EACH ROW EXECUTE FUNCTION woe_anchor_internal.band_schema_guard('schema_version');
CREATE TRIGGER woe_anchor_band_schemas_no_truncate
    BEFORE TRUNCATE ON ml.woe_anchor_band_schemas
    FOR EACH STATEMENT EXECUTE FUNCTION woe_anchor_internal.band_schema_guard('version');
CREATE TRIGGER woe_anchor_bands_no_truncate
    BEFORE TRUNCATE ON ml.woe_anchor_bands
    FOR EACH STATEMENT EXECUTE FUNCTION woe_anchor_internal.band_schema_guard('schema_version');

-- A model keeps its band schema from changing (band_schema_guard): a role fits only with schema 1,
-- a superuser's schema, or one whose creator it may manage, so no trainer freezes another's.
-- Checked where a fit starts, where one is scheduled, and where a model is persisted.
CREATE FUNCTION woe_anchor_internal.require_fittable(who name, version int) RETURNS void
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    owner name;
BEGIN
    SELECT s.created_by INTO owner FROM ml.woe_anchor_band_schemas AS s WHERE s.version = require_fittable.version;
    IF FOUND AND version <> 1 AND NOT woe_anchor_internal.may_manage(who, owner)
       AND NOT coalesce((SELECT r.rolsuper FROM pg_roles AS r WHERE r.rolname = owner), false) THEN
        RAISE EXCEPTION 'permission denied to fit with band schema %: it was created by %, and a model would keep it '
                        'from changing', version, owner
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('Copy it and fit with the copy: SELECT ml.woe_anchor_copy_band_schema(%s, <new version>);',
                                version);
    END IF;
END
$$;

-- Band-schema edits for a ticket's role. SECURITY DEFINER: trainers hold no DML on the band
-- tables (with it they could lock the tables every fit reads). A schema is its creator's to edit
-- (or a member's, or a superuser's); the guard trigger above still keeps schema 1 and the schemas
-- models use unchanged. `edit` is one of copy (doc: from, description), create (doc: description,
-- subsets, learned), set_band (doc: rule, column_name, position, subset), drop_band, drop_schema.
CREATE FUNCTION woe_anchor_internal.edit_band_schema(ticket uuid, target int, edit text, band text, doc jsonb)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who name := woe_anchor_internal.caller(ticket);
    owner name;
    source int := (doc ->> 'from')::int;
    max_position constant int := 10000;  -- far past any schema's bands, far below int's end
BEGIN
    IF target IS NULL THEN
        RAISE EXCEPTION 'the band schema version must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- the tables' constraints, checked first so that the error names the argument
    IF edit = 'copy' AND source IS NULL THEN
        RAISE EXCEPTION 'from_version must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    ELSIF edit IN ('copy', 'create') AND target < 1 THEN
        RAISE EXCEPTION 'a band schema version must be 1 or more, got %', target USING ERRCODE = 'invalid_parameter_value';
    ELSIF edit = 'create' AND jsonb_typeof(doc -> 'subsets') IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'subsets must be a JSON object (subset name: condition), got %',
            coalesce(jsonb_typeof(doc -> 'subsets'), 'NULL') USING ERRCODE = 'invalid_parameter_value';
    ELSIF edit = 'create' AND jsonb_typeof(doc -> 'learned') IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'learned must be a JSON array of thresholds, got %',
            coalesce(jsonb_typeof(doc -> 'learned'), 'NULL') USING ERRCODE = 'invalid_parameter_value';
    ELSIF edit IN ('set_band', 'drop_band') AND band IS NULL THEN
        RAISE EXCEPTION 'band_name must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    ELSIF edit = 'set_band' AND jsonb_typeof(doc -> 'rule') IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'rule must be a JSON object, got %', coalesce(jsonb_typeof(doc -> 'rule'), 'NULL')
            USING ERRCODE = CASE WHEN doc -> 'rule' IS NULL THEN 'null_value_not_allowed' ELSE 'invalid_parameter_value' END,
                  HINT = 'See docs/band-schemas.md for the rule of each kind of band.';
    ELSIF edit = 'set_band' AND NOT coalesce((doc ->> 'position')::int BETWEEN 1 AND max_position, true) THEN
        RAISE EXCEPTION 'band_position must be between 1 and %, got %', max_position, doc ->> 'position'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT s.created_by INTO owner FROM ml.woe_anchor_band_schemas AS s WHERE s.version = target;
    IF edit IN ('copy', 'create') THEN
        IF owner IS NOT NULL THEN
            RAISE EXCEPTION 'band schema % already exists', target
                USING ERRCODE = 'duplicate_object', HINT = 'Choose another version number.';
        END IF;
        IF edit = 'copy' AND NOT EXISTS (SELECT FROM ml.woe_anchor_band_schemas AS s WHERE s.version = source) THEN
            RAISE EXCEPTION 'band schema % does not exist', source USING ERRCODE = 'undefined_object';
        END IF;
        INSERT INTO ml.woe_anchor_band_schemas (version, description, subsets, learned, created_by)
        SELECT target, coalesce(doc ->> 'description', format('copy of band schema %s', source)),
               s.subsets, s.learned, who
        FROM ml.woe_anchor_band_schemas AS s WHERE edit = 'copy' AND s.version = source
        UNION ALL
        SELECT target, coalesce(doc ->> 'description', ''), coalesce(doc -> 'subsets', '{}'),
               coalesce(doc -> 'learned', '[]'), who
        WHERE edit = 'create';
        INSERT INTO ml.woe_anchor_bands (schema_version, position, band_name, column_name, subset, rule)
        SELECT target, b.position, b.band_name, b.column_name, b.subset, b.rule
        FROM ml.woe_anchor_bands AS b WHERE edit = 'copy' AND b.schema_version = source;
        RETURN true;
    END IF;
    IF owner IS NULL THEN
        RAISE EXCEPTION 'band schema % does not exist', target USING ERRCODE = 'undefined_object';
    ELSIF NOT woe_anchor_internal.may_manage(who, owner) THEN
        RAISE EXCEPTION 'permission denied to change band schema %: it was created by %', target, owner
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('Copy it and edit the copy: SELECT ml.woe_anchor_copy_band_schema(%s, <new version>);',
                                target);
    END IF;
    IF edit = 'set_band' THEN
        INSERT INTO ml.woe_anchor_bands AS b (schema_version, position, band_name, column_name, subset, rule)
        VALUES (target,
                coalesce((doc ->> 'position')::int, (SELECT coalesce(max(x.position), 0) + 1 FROM ml.woe_anchor_bands AS x
                                                     WHERE x.schema_version = target)),
                band, coalesce(doc ->> 'column_name', band || '_band'), doc ->> 'subset', doc -> 'rule')
        ON CONFLICT (schema_version, band_name) DO UPDATE
            SET position = coalesce((doc ->> 'position')::int, b.position),
                column_name = coalesce(doc ->> 'column_name', b.column_name),
                subset = doc ->> 'subset', rule = doc -> 'rule';
        RETURN true;
    ELSIF edit = 'drop_band' THEN
        DELETE FROM ml.woe_anchor_bands AS b
        WHERE b.schema_version = target AND b.band_name = band;
        RETURN FOUND;
    ELSIF edit = 'drop_schema' THEN
        DELETE FROM ml.woe_anchor_band_schemas AS s WHERE s.version = target;
        RETURN FOUND;
    END IF;
    RAISE EXCEPTION 'unknown band schema edit %', quote_literal(edit) USING ERRCODE = 'invalid_parameter_value';
END
$$;

-- A new schema that starts as a copy of another (then edit it with ml.woe_anchor_set_band and
-- ml.woe_anchor_drop_band).
CREATE FUNCTION ml.woe_anchor_copy_band_schema(from_version int, to_version int, description text DEFAULT NULL)
RETURNS int
LANGUAGE sql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT to_version WHERE woe_anchor_internal.edit_band_schema(woe_anchor_internal.ticket(), to_version, 'copy', NULL,
                                                        jsonb_build_object('from', from_version, 'description', description))
$$;

-- A new, empty schema: its subsets and learned thresholds (README, "Band schemas").
CREATE FUNCTION ml.woe_anchor_create_band_schema(version int, description text DEFAULT '',
                                                 subsets jsonb DEFAULT '{}', learned jsonb DEFAULT '[]')
RETURNS int
LANGUAGE sql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT version WHERE woe_anchor_internal.edit_band_schema(woe_anchor_internal.ticket(), version, 'create', NULL,
    jsonb_build_object('description', description, 'subsets', subsets, 'learned', learned))
$$;

-- Adds a band to a schema of yours, or replaces the band of that name (column defaults to
-- <band_name>_band, position to after the last).
CREATE FUNCTION ml.woe_anchor_set_band(schema_version int, band_name text, rule jsonb, column_name text DEFAULT NULL,
                                       band_position int DEFAULT NULL, subset text DEFAULT NULL)
RETURNS void
LANGUAGE sql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT FROM woe_anchor_internal.edit_band_schema(woe_anchor_internal.ticket(), schema_version, 'set_band', band_name,
    jsonb_strip_nulls(jsonb_build_object('rule', rule, 'column_name', column_name, 'position', band_position,
                                         'subset', subset)))
$$;

-- Removes a band from a schema of yours; true when it was there.
CREATE FUNCTION ml.woe_anchor_drop_band(schema_version int, band_name text)
RETURNS boolean
LANGUAGE sql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT woe_anchor_internal.edit_band_schema(woe_anchor_internal.ticket(), schema_version, 'drop_band', band_name, NULL)
$$;

-- Removes a schema of yours that no model uses; true when it was there.
CREATE FUNCTION ml.woe_anchor_drop_band_schema(version int)
RETURNS boolean
LANGUAGE sql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT woe_anchor_internal.edit_band_schema(woe_anchor_internal.ticket(), version, 'drop_schema', NULL, NULL)
$$;

CREATE FUNCTION woe_anchor_internal.band_schema_problems(version int, source oid)
RETURNS TABLE (band_name text, problem text)
LANGUAGE plpython3u STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $woe_anchor_py$
@LOAD_PACKAGE@
return woe_anchor.errors.reported(plpy, woe_anchor.schemas.problems, plpy, version, source)
$woe_anchor_py$;

-- Everything wrong with a schema (and, given a source, with that source for it), before any fit.
CREATE FUNCTION ml.woe_anchor_band_schema_problems(version int, source regclass DEFAULT NULL)
RETURNS TABLE (band_name text, problem text)
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    @ERROR_VARIABLES@
BEGIN
    RETURN QUERY SELECT * FROM woe_anchor_internal.band_schema_problems(version, source::oid);
@RERAISE_AS_PLAIN_ERROR@
END
$$;

COMMENT ON FUNCTION ml.woe_anchor_band_schema(int) IS 'A band schema as one JSON document (schema row and bands)';
COMMENT ON FUNCTION woe_anchor_internal.require_fittable(name, int) IS
    'woe_anchor internal: refuses a fit with a band schema another role made (a model would freeze it)';
COMMENT ON FUNCTION woe_anchor_internal.band_schema_guard() IS 'woe_anchor internal: keeps built-in and used band schemas unchanged';
COMMENT ON FUNCTION woe_anchor_internal.edit_band_schema(uuid, int, text, text, jsonb) IS
    'woe_anchor internal: a band-schema edit for the role of a ticket';
COMMENT ON FUNCTION ml.woe_anchor_copy_band_schema(int, int, text) IS 'Create band schema to_version as a copy of from_version';
COMMENT ON FUNCTION ml.woe_anchor_create_band_schema(int, text, jsonb, jsonb) IS 'Create an empty band schema';
COMMENT ON FUNCTION ml.woe_anchor_set_band(int, text, jsonb, text, int, text) IS
    'Add a band to a band schema of yours, or replace the band of that name';
COMMENT ON FUNCTION ml.woe_anchor_drop_band(int, text) IS 'Remove a band from a band schema of yours';
COMMENT ON FUNCTION ml.woe_anchor_drop_band_schema(int) IS 'Remove a band schema of yours that no model uses';
COMMENT ON FUNCTION woe_anchor_internal.band_schema_problems(int, oid) IS 'woe_anchor internal: the problems behind ml.woe_anchor_band_schema_problems';
COMMENT ON FUNCTION ml.woe_anchor_band_schema_problems(int, regclass) IS
    'Problems of a band schema (unknown columns, bad rules, unsorted thresholds, duplicates); no rows = fit-ready';
