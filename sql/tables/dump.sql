-- pg_dump keeps the contents of these extension tables (models survive backup and restore).
SELECT pg_catalog.pg_extension_config_dump('ml.woe_anchor_model_registry_v1', '');
SELECT pg_catalog.pg_extension_config_dump('ml.woe_anchor_cuts_v1', '');
SELECT pg_catalog.pg_extension_config_dump('ml.woe_anchor_map_v1', '');
SELECT pg_catalog.pg_extension_config_dump('ml.woe_anchor_model_id_seq', '');
-- User band schemas too; the built-in ones come back with CREATE EXTENSION.
SELECT pg_catalog.pg_extension_config_dump('ml.woe_anchor_band_schemas', 'WHERE version <> 1');
SELECT pg_catalog.pg_extension_config_dump('ml.woe_anchor_bands', 'WHERE schema_version <> 1');
