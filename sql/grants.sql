-- Nothing is executable by PUBLIC; grant deliberately (README, "Security model").
REVOKE ALL ON FUNCTION ml._woe_anchor_load() FROM PUBLIC;
REVOKE ALL ON FUNCTION ml._fit_woe_anchor(oid, timestamptz, int, float8, float8, float8, float8, float8[], text, boolean, boolean, boolean, boolean) FROM PUBLIC;
REVOKE ALL ON PROCEDURE ml.fit_woe_anchor(regclass, timestamptz, int, float8, float8, float8, float8, float8[], text, boolean, boolean, boolean, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION ml._woe_anchor_drop_scores() FROM PUBLIC;
