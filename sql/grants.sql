-- Nothing of the extension is executable by PUBLIC; grant deliberately (README, "Security model").
DO $$
DECLARE
    fn regprocedure;
BEGIN
    FOR fn IN SELECT d.objid::regprocedure FROM pg_catalog.pg_depend AS d
              JOIN pg_catalog.pg_extension AS e ON e.oid = d.refobjid AND e.extname = 'woe_anchor'
              WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.deptype = 'e' LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON ROUTINE %s FROM PUBLIC', fn);
    END LOOP;
END
$$;
-- Roles that hold rights already (an upgrade) get exactly the current model's: whoever may fit
-- is a trainer, whoever may read the registry a reader.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT DISTINCT a.grantee::regrole AS role,
                    bool_or(c.oid IS NULL) OVER (PARTITION BY a.grantee) AS trains
             FROM (SELECT p.proacl AS acl, NULL::oid AS oid FROM pg_catalog.pg_proc AS p
                   WHERE p.oid = 'ml.fit_woe_anchor'::regproc
                   UNION ALL
                   SELECT c.relacl, c.oid FROM pg_catalog.pg_class AS c
                   WHERE c.oid = 'ml.woe_anchor_model_registry_v1'::regclass) AS c,
                  aclexplode(c.acl) AS a
             WHERE a.grantee <> 0
               AND a.grantee <> (SELECT e.extowner FROM pg_catalog.pg_extension AS e WHERE e.extname = 'woe_anchor')
    LOOP
        PERFORM ml.woe_anchor_revoke(r.role);
        IF r.trains THEN
            PERFORM ml.woe_anchor_grant(trainer => r.role);
        ELSE
            PERFORM ml.woe_anchor_grant(reader => r.role);
        END IF;
    END LOOP;
END
$$;
