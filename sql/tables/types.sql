-- The rows ml.woe_anchor_score returns (a type, so the function may take a model_key argument too).
CREATE TYPE ml.woe_anchor_score_row AS (
    generation int, listing_id bigint, t0 timestamptz, model_key text,
    woe_logit float8, woe_anchor_p_slow21 float8);
