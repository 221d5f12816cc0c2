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
-- A GRANT or REVOKE run by CREATE or ALTER EXTENSION is recorded in pg_init_privs as the extension's
-- own initial privilege, which pg_dump leaves out of a dump: the re-grants above (and an update's
-- revokes) would make every role's rights vanish from the next dump. What the script itself gives
-- is the owner's and PUBLIC's alone, so that is all the record keeps; objects outside the extension
-- that an update touched (score partitions, live views, the schemas) keep no record at all, as after
-- a fresh install. (A supported way to do this does not exist: the alternative, granting outside the
-- update, would leave every role without its rights until someone ran it.)
DO $$
DECLARE
    ext oid;
    owner oid;
    ours oid[];
BEGIN
    SELECT e.oid, e.extowner INTO ext, owner FROM pg_catalog.pg_extension AS e WHERE e.extname = 'woe_anchor';
    ours := ARRAY(SELECT n.oid FROM pg_catalog.pg_namespace AS n
                  WHERE n.nspname IN ('ml', 'woe_anchor_scores', 'woe_anchor_internal'));
    UPDATE pg_catalog.pg_init_privs AS i
    SET initprivs = ARRAY(SELECT a FROM unnest(i.initprivs) AS a
                          WHERE (SELECT x.grantee FROM pg_catalog.aclexplode(ARRAY[a]) AS x LIMIT 1) IN (0, owner))
    WHERE i.privtype = 'e'
      AND EXISTS (SELECT FROM pg_catalog.pg_depend AS d WHERE d.classid = i.classoid AND d.objid = i.objoid
                  AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.refobjid = ext AND d.deptype = 'e');
    DELETE FROM pg_catalog.pg_init_privs AS i
    WHERE i.privtype = 'e'
      AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend AS d WHERE d.classid = i.classoid AND d.objid = i.objoid
                      AND d.deptype = 'e')
      AND CASE i.classoid
          WHEN 'pg_catalog.pg_namespace'::regclass THEN i.objoid = ANY (ours)
          WHEN 'pg_catalog.pg_class'::regclass THEN
              (SELECT c.relnamespace FROM pg_catalog.pg_class AS c WHERE c.oid = i.objoid) = ANY (ours)
              OR i.objoid IN (SELECT pg_catalog.to_regclass(v.view_name) FROM ml.woe_anchor_views AS v
                              WHERE v.kind <> 'function')
          -- the per-row functions of the live views are made in ml
          WHEN 'pg_catalog.pg_proc'::regclass THEN
              (SELECT p.pronamespace FROM pg_catalog.pg_proc AS p WHERE p.oid = i.objoid) = ANY (ours)
          ELSE false END;
    -- from 17 on, each role an initial privilege names has a shared dependency on it (deptype 'i'),
    -- which DROP OWNED and DROP ROLE go by: those of the roles taken out above go too
    DELETE FROM pg_catalog.pg_shdepend AS d
    WHERE d.deptype = 'i' AND d.dbid = (SELECT b.oid FROM pg_catalog.pg_database AS b WHERE b.datname = current_database())
      AND NOT EXISTS (SELECT FROM pg_catalog.pg_init_privs AS i, pg_catalog.aclexplode(i.initprivs) AS a
                      WHERE i.classoid = d.classid AND i.objoid = d.objid AND i.objsubid = d.objsubid
                        AND d.refobjid IN (a.grantee, a.grantor));
END
$$;
