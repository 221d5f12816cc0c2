-- Re-raises an error caught by a PL/pgSQL wrapper as a plain PostgreSQL error:
-- same SQLSTATE, detail and hint, without PL/Python's type prefix and traceback.
CREATE FUNCTION woe_anchor_internal.reraise(state text, message text, detail text, hint text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- an error re-raised through nested PL/Python calls carries one prefix per level
    message := regexp_replace(message, '^((plpy|spiexceptions)[.][A-Za-z]+: )+', '');
    -- RAISE prints empty DETAIL/HINT lines, so pass only those that exist
    IF detail <> '' AND hint <> '' THEN
        RAISE EXCEPTION USING ERRCODE = state, MESSAGE = message, DETAIL = detail, HINT = hint;
    ELSIF hint <> '' THEN
        RAISE EXCEPTION USING ERRCODE = state, MESSAGE = message, HINT = hint;
    ELSIF detail <> '' THEN
        RAISE EXCEPTION USING ERRCODE = state, MESSAGE = message, DETAIL = detail;
    END IF;
    RAISE EXCEPTION USING ERRCODE = state, MESSAGE = message;
END
$$;

COMMENT ON FUNCTION woe_anchor_internal.reraise(text, text, text, text) IS
    'woe_anchor internal: re-raises a caught error without the PL/Python traceback';
