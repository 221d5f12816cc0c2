-- The one writer of a fit's artifacts: registry, cuts and map rows, the score partition taken
-- over from the fit's staging table, the shard-table records, and the activation.
-- SECURITY DEFINER: trainers have no rights on the artifact tables and create nothing the
-- extension later acts on; this checks everything it is given (plpython/woe_anchor/persist.py)
-- and learns its caller from a ticket.
CREATE FUNCTION woe_anchor_internal.persist(ticket uuid, payload text) RETURNS text
LANGUAGE plpython3u VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET woe_anchor.artifact_write = on
SET jit = off
@TIMESTAMPS_AS_UTC_ISO@
SET standard_conforming_strings = on
AS $woe_anchor_py$
@LOAD_PACKAGE@
return woe_anchor.persist.persist(plpy, woe_anchor.VERSION, woe_anchor.CODE_SHA256, ticket, payload)
$woe_anchor_py$;

COMMENT ON FUNCTION woe_anchor_internal.persist(uuid, text) IS
    'woe_anchor internal: writes a fit''s artifacts for the role of a ticket, after checking all of them';

-- A schema for one fit's scores, before the persist takes them over (docs/security.md). The
-- caller may CREATE in it and nothing else, for this transaction only: the persist drops it,
-- and the deferred trigger below refuses a commit that would keep it. SECURITY DEFINER: no
-- trainer has CREATE on a schema of its own here.
CREATE FUNCTION woe_anchor_internal.open_staging(ticket uuid) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who name := woe_anchor_internal.caller(ticket);
    staging name := 'woe_anchor_staging_' || left(replace(gen_random_uuid()::text, '-', ''), 16);
BEGIN
    EXECUTE format('CREATE SCHEMA %I', staging);
    EXECUTE format('GRANT CREATE ON SCHEMA %I TO %I', staging, who);
    INSERT INTO ml._woe_anchor_staging (schema_name, role_name, xact) VALUES (staging, who, pg_current_xact_id());
    RETURN quote_ident(staging);
END
$$;

-- Fires at commit (or at SET CONSTRAINTS ... IMMEDIATE) for every staging schema opened in the
-- transaction: the persist must have dropped it by then.
CREATE FUNCTION woe_anchor_internal.staging_closed() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT FROM pg_namespace AS n WHERE n.nspname = NEW.schema_name) THEN
        RAISE EXCEPTION 'staging schema % was not taken over by a fit', quote_ident(NEW.schema_name)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Staging schemas live inside CALL ml.fit_woe_anchor only.';
    END IF;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER woe_anchor_staging_closed
    AFTER INSERT ON ml._woe_anchor_staging DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION woe_anchor_internal.staging_closed();

COMMENT ON FUNCTION woe_anchor_internal.open_staging(uuid) IS
    'woe_anchor internal: a schema where the fit of a ticket''s role writes its scores, for this transaction';
COMMENT ON FUNCTION woe_anchor_internal.staging_closed() IS
    'woe_anchor internal: refuses a commit that leaves a staging schema behind';
