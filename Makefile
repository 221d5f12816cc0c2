# woe_anchor: PGXS build. `make` generates the extension script, `make install`
# copies it with the control file, `make installcheck` runs the regression test.
EXTENSION    = woe_anchor
EXTVERSION   = $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" $(EXTENSION).control)
PYTHON      ?= python3

# Order matters: tables before the functions that name them, grants last.
TABLE_SOURCES    = sql/tables/band_schemas.sql sql/tables/registry.sql sql/tables/cuts.sql \
                   sql/tables/map.sql sql/tables/scores.sql sql/tables/types.sql sql/tables/dump.sql
FUNCTION_SOURCES = sql/functions/errors.sql sql/functions/loader.sql sql/functions/callers.sql \
                   sql/functions/drop_scores.sql sql/functions/band_schemas.sql sql/functions/models.sql \
                   sql/functions/hooks.sql sql/functions/persist.sql sql/functions/fit.sql \
                   sql/functions/schedule.sql sql/functions/import.sql sql/functions/inference.sql \
                   sql/functions/monitor.sql sql/functions/views.sql sql/functions/roles.sql sql/functions/comments.sql \
                   sql/grants.sql
# The tables of the first release, then every migration since, in version order: a fresh install
# is the same chain of table changes an upgraded one went through.
MIGRATION_CHAIN = $(shell ls sql/migrations/*--*.sql 2>/dev/null | sort -V)
SQL_SOURCES  = sql/header.sql $(TABLE_SOURCES) $(MIGRATION_CHAIN) $(FUNCTION_SOURCES)
# Upgrades to this version: the frozen table migration, then every routine re-created in place.
MIGRATIONS   = $(wildcard sql/migrations/*--$(EXTVERSION).sql)
UPGRADES     = $(patsubst sql/migrations/%.sql,extension/woe_anchor--%.sql,$(MIGRATIONS))
# Dependency order: a module comes after every module it imports.
PY_MODULES   = $(addprefix plpython/woe_anchor/, catalog.py errors.py bands.py sqlgen.py woe.py quality.py spill.py heap.py \
               packs.py source.py schemas.py passes.py policy.py persist.py rowset.py sharded.py readers.py legacy.py inference.py gate.py fit.py monitor.py views.py)

DATA_built   = extension/$(EXTENSION)--$(EXTVERSION).sql $(UPGRADES)
# released scripts, committed and frozen: older versions' full scripts and their upgrade steps
DATA         = $(filter-out $(DATA_built), $(wildcard extension/$(EXTENSION)--*.sql))
REGRESS      = woe_anchor_smoke
REGRESS_OPTS = --inputdir=tests/regress --outputdir=build/regress
EXTRA_CLEAN  = build META.json $(DIST)

PG_CONFIG   ?= pg_config
PGXS        := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

all: $(DATA_built)

extension/$(EXTENSION)--$(EXTVERSION).sql: $(SQL_SOURCES) $(PY_MODULES) extension/build.py $(EXTENSION).control
	$(PYTHON) extension/build.py $(EXTVERSION) $@ $(SQL_SOURCES) -- $(PY_MODULES)

extension/$(EXTENSION)--%--$(EXTVERSION).sql: sql/migrations/%--$(EXTVERSION).sql $(FUNCTION_SOURCES) $(PY_MODULES) extension/build.py
	$(PYTHON) extension/build.py $(EXTVERSION) $@ sql/header.sql $< $(FUNCTION_SOURCES) -- $(PY_MODULES)

installcheck: | build/regress
build/regress:
	mkdir -p $@

# PGXN: META.json carries the control file's version; `make dist` zips the tracked sources
# (the extension script is built from them by `make` on the installing machine).
DIST = woe_anchor-$(EXTVERSION).zip
META.json: META.json.in woe_anchor.control
	sed 's/@VERSION@/$(EXTVERSION)/g' $< > $@

.PHONY: dist
dist: META.json
	rm -f $(DIST)
	$(PYTHON) extension/dist.py $(DIST) woe_anchor-$(EXTVERSION) META.json

# The two commands of the README: the demo, and the whole test suite.
.PHONY: demo test
demo:
	bash harness/run.sh demo
test:
	bash harness/run.sh test

# `make -s print-VAR` shows a variable (the upgrade test reads the source lists this way).
print-%:
	@echo $($*)
