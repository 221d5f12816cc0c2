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
