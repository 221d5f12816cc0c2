-- Who calls a definer entry point (docs/security.md, "Knowing the caller"). A SECURITY DEFINER
-- function runs as the extension's owner and cannot see its caller; the caller proves who it
-- is with a ticket row, which this trigger stamps with the role running the INSERT. It runs as
-- that role (SECURITY INVOKER), and a trainer can neither disable it nor read others' tickets.
CREATE FUNCTION woe_anchor_internal.stamp_ticket() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.role_name := current_user;
    NEW.backend := pg_backend_pid();
    NEW.xact := pg_current_xact_id();
    RETURN NEW;
END
$$;

CREATE TRIGGER woe_anchor_stamp_ticket
    BEFORE INSERT OR UPDATE ON ml._woe_anchor_callers
    FOR EACH ROW EXECUTE FUNCTION woe_anchor_internal.stamp_ticket();

-- A fresh ticket of the calling role, for one definer call in this transaction.
CREATE FUNCTION woe_anchor_internal.ticket() RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ticket uuid := gen_random_uuid();
BEGIN
    -- no RETURNING: callers may insert tickets, not read them
    INSERT INTO ml._woe_anchor_callers (ticket, role_name, backend, xact) VALUES (ticket, '', 0, '0');
    RETURN ticket;
END
$$;

-- The role that inserted a ticket in this backend and transaction; the ticket is used up.
-- Called by definer entry points only (no role is granted it).
CREATE FUNCTION woe_anchor_internal.caller(ticket uuid) RETURNS name
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    who name;
BEGIN
    -- tickets a caller inserted itself and never used die with their transaction
    -- (rows another transaction is deleting are skipped, not waited for)
    DELETE FROM ml._woe_anchor_callers AS c
    WHERE c.ctid = ANY (ARRAY(SELECT s.ctid FROM ml._woe_anchor_callers AS s
                              WHERE s.xact <> pg_current_xact_id()
                                AND pg_xact_status(s.xact) IS DISTINCT FROM 'in progress'
                              FOR UPDATE SKIP LOCKED));
    DELETE FROM ml._woe_anchor_callers AS c
    WHERE c.ticket = caller.ticket AND c.backend = pg_backend_pid() AND c.xact = pg_current_xact_id()
    RETURNING c.role_name INTO who;
    IF who IS NULL THEN
        -- the trigger that stamps tickets does not fire for a replica's session
        IF current_setting('session_replication_role') = 'replica' THEN
            RAISE EXCEPTION 'woe_anchor cannot tell who calls it with session_replication_role = replica'
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'SET session_replication_role = DEFAULT in this session first.';
        END IF;
        RAISE EXCEPTION 'no valid woe_anchor caller ticket'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Call the public ml.* functions; the internal ones take a ticket of this transaction.';
    END IF;
    RETURN who;
END
$$;

-- Whether role `who` may drop or replace what role `owner` made: it is that role, a member of
-- it, or a superuser. A dropped owner leaves its objects to superusers.
CREATE FUNCTION woe_anchor_internal.may_manage(who name, owner name) RETURNS boolean
LANGUAGE sql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT EXISTS (SELECT FROM pg_roles AS r WHERE r.rolname = who AND r.rolsuper)
    OR (EXISTS (SELECT FROM pg_roles AS r WHERE r.rolname = owner) AND pg_has_role(who, owner, 'MEMBER'))
$$;

-- Refuses role `who` an `action` (drop, annotate) on model `key` that role `owner` fitted, unless
-- it may manage it.
CREATE FUNCTION woe_anchor_internal.require_manage(who name, owner name, action text, key text) RETURNS void
LANGUAGE plpgsql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF owner IS NOT NULL AND NOT woe_anchor_internal.may_manage(who, owner) THEN
        RAISE EXCEPTION 'permission denied to % model %: it was fitted by %', action, quote_literal(key), owner
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('Ask %s or a superuser, or GRANT %I TO %I.', owner, owner, who);
    END IF;
END
$$;

-- Whether only superusers own schema `nsp`, so that no one else can swap what is named in it
-- (pg_database_owner, PostgreSQL 15's owner of schema public, stands for the database's owner).
CREATE FUNCTION woe_anchor_internal.superusers_schema(nsp name) RETURNS boolean
LANGUAGE sql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT (SELECT r.rolsuper FROM pg_namespace AS n
        JOIN pg_roles AS r ON r.oid = CASE WHEN n.nspowner = 'pg_database_owner'::regrole
                                           THEN (SELECT d.datdba FROM pg_database AS d
                                                 WHERE d.datname = current_database())
                                           ELSE n.nspowner END
        WHERE n.nspname = nsp)  -- NULL: no such schema
$$;

COMMENT ON FUNCTION woe_anchor_internal.superusers_schema(name) IS
    'woe_anchor internal: whether a schema is a superuser''s (no one else can swap names in it); NULL when there is none';
COMMENT ON FUNCTION woe_anchor_internal.stamp_ticket() IS 'woe_anchor internal: stamps a caller ticket with the inserting role';
COMMENT ON FUNCTION woe_anchor_internal.ticket() IS 'woe_anchor internal: a caller ticket for one definer call';
COMMENT ON FUNCTION woe_anchor_internal.caller(uuid) IS 'woe_anchor internal: the role behind a ticket (consumes it)';
COMMENT ON FUNCTION woe_anchor_internal.require_manage(name, name, text, text) IS
    'woe_anchor internal: refuses an action on a model its role may not manage';
COMMENT ON FUNCTION woe_anchor_internal.may_manage(name, name) IS
    'woe_anchor internal: whether a role may drop or replace what another role made';
