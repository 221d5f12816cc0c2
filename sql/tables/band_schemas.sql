-- Band schemas as data: what a model's bands read and how they map inputs to labels.
-- A schema is immutable once a model uses it (trigger in functions/band_schemas.sql);
-- version 1 is SPEC.md's schema and ships with the extension.
CREATE TABLE ml.woe_anchor_band_schemas (
    version      int PRIMARY KEY CHECK (version >= 1),
    description  text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   name NOT NULL DEFAULT current_user,
    -- name -> test ({"input": ..., "op": ..., "value": ...}): row sets of "subset" bands
    subsets      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(subsets) = 'object'),
    -- thresholds learned at fit time ("scale" and "quantiles" rules), stored per model in the cuts
    learned      jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(learned) = 'array')
);

-- One row per band; `rule` is JSON of one kind: ladder, flags, rules or category (README,
-- "Band schemas"). Nothing in it is SQL: column names are quoted, labels are literals.
CREATE TABLE ml.woe_anchor_bands (
    schema_version  int NOT NULL REFERENCES ml.woe_anchor_band_schemas (version) ON DELETE CASCADE,
    position        int NOT NULL,
    band_name       text NOT NULL,
    column_name     text NOT NULL,
    subset          text,
    rule            jsonb NOT NULL CHECK (jsonb_typeof(rule) = 'object'),
    PRIMARY KEY (schema_version, band_name),
    UNIQUE (schema_version, position),
    UNIQUE (schema_version, column_name)
);

COMMENT ON TABLE ml.woe_anchor_band_schemas IS
    'woe_anchor: band schemas (version 1 ships with the extension; a schema a model uses is immutable)';
COMMENT ON TABLE ml.woe_anchor_bands IS
    'woe_anchor: the bands of each schema, in position order, each with a JSON rule';

@BUILT_IN_SCHEMAS@
