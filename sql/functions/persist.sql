-- The one writer of a fit's artifacts: registry, cuts and map rows, the score partition copied
-- from the fit's staging tables, the shard-table records, and the activation.
-- SECURITY DEFINER: trainers have no rights on the artifact tables and create nothing the
-- extension later acts on; this checks everything it is given (plpython/woe_anchor/persist.py)
-- and learns its caller from a ticket.
CREATE FUNCTION ml._woe_anchor_persist(ticket uuid, payload text) RETURNS text
LANGUAGE plpython3u VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
SET standard_conforming_strings = on
AS $woe_anchor_py$
@LOAD_PACKAGE@
return woe_anchor.persist.persist(plpy, woe_anchor.VERSION, woe_anchor.CODE_SHA256, ticket, payload)
$woe_anchor_py$;

COMMENT ON FUNCTION ml._woe_anchor_persist(uuid, text) IS
    'woe_anchor internal: writes a fit''s artifacts for the role of a ticket, after checking all of them';
