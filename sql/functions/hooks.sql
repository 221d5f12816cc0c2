-- Runs the activation hooks when a model becomes the active one, in that transaction: a hook
-- that raises refuses the activation. Activations happen inside the definer entry points, as the
-- extension's owner, so a hook must be a superuser's function or SECURITY DEFINER (then it runs
-- as its own owner); anything else is refused here too, whoever registered it.
CREATE FUNCTION ml._woe_anchor_run_activation_hooks() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    h record;
BEGIN
    FOR h IN SELECT a.hook, n.nspname, p.proname, p.pronargs, p.prosecdef OR r.rolsuper AS trusted
             FROM ml.woe_anchor_activation_hooks AS a
             JOIN pg_proc AS p ON p.oid = a.hook
             JOIN pg_namespace AS n ON n.oid = p.pronamespace
             JOIN pg_roles AS r ON r.oid = p.proowner
             ORDER BY a.registered_at, a.hook LOOP
        IF NOT h.trusted THEN
            RAISE EXCEPTION 'activation hook % is neither SECURITY DEFINER nor owned by a superuser', h.hook
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'Make it SECURITY DEFINER, or remove it: SELECT ml.woe_anchor_remove_activation_hook(...);';
        END IF;
        EXECUTE format('SELECT %I.%I(%s)', h.nspname, h.proname, CASE WHEN h.pronargs = 1 THEN '$1' ELSE '' END)
            USING NEW.model_key;
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TRIGGER woe_anchor_activation_hooks
    AFTER UPDATE OF is_active ON ml.woe_anchor_model_registry_v1
    FOR EACH ROW WHEN (NEW.is_active AND NOT OLD.is_active)
    EXECUTE FUNCTION ml._woe_anchor_run_activation_hooks();

-- Registers a function every activation runs (fit, ml.woe_anchor_activate, scheduled fits, the
-- trainer import), e.g. a re-certification of your pipeline. It takes the model key (text) or
-- nothing; it must be SECURITY DEFINER or a superuser's. Superusers only (the table is theirs).
CREATE FUNCTION ml.woe_anchor_add_activation_hook(hook regprocedure)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_proc AS p WHERE p.oid = hook AND p.prokind = 'f'
                     AND (p.pronargs = 0 OR (p.pronargs = 1 AND p.proargtypes[0] = 'text'::regtype))) THEN
        RAISE EXCEPTION 'activation hook % must be a function of (text) or of no arguments', hook
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_proc AS p JOIN pg_roles AS r ON r.oid = p.proowner
                   WHERE p.oid = hook AND (p.prosecdef OR r.rolsuper)) THEN
        RAISE EXCEPTION 'activation hook % must be SECURITY DEFINER or owned by a superuser', hook
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Activations run as woe_anchor''s owner: an ordinary function of another role would run with its rights.';
    END IF;
    INSERT INTO ml.woe_anchor_activation_hooks (hook) VALUES (hook) ON CONFLICT DO NOTHING;
END
$$;

CREATE FUNCTION ml.woe_anchor_remove_activation_hook(hook regprocedure)
RETURNS boolean
LANGUAGE sql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
WITH gone AS (DELETE FROM ml.woe_anchor_activation_hooks AS a WHERE a.hook = woe_anchor_remove_activation_hook.hook
              RETURNING 1)
SELECT count(*) > 0 FROM gone
$$;

COMMENT ON FUNCTION ml._woe_anchor_run_activation_hooks() IS 'woe_anchor internal: runs the activation hooks';
COMMENT ON FUNCTION ml.woe_anchor_add_activation_hook(regprocedure) IS
    'Run a function (of the model key, or of nothing) in every model activation''s transaction';
COMMENT ON FUNCTION ml.woe_anchor_remove_activation_hook(regprocedure) IS 'Stop running an activation hook; true if it was registered';
