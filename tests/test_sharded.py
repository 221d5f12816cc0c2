"""Sharded sources: two extra PostgreSQL clusters on loopback, rows sharded by generation.

A LIST-partitioned source whose partitions are postgres_fdw foreign tables on
the shards (and one local table) fits exactly like the same rows in one
table, while the fit's aggregation runs on the shards.
"""
from __future__ import annotations

import os
import re

import numpy as np
import psycopg
import pytest

import artifacts
import cases
import reference
from conftest import fit, drop_live_views
from test_fit_reference import assert_matches
from woe_anchor_harness import shards as sharding
from woe_anchor import passes, rowset

pytestmark = pytest.mark.local_server  # throwaway shard clusters on this machine

SHARD_PORTS = 25441  # and the next one: below the ephemeral ports (32768-60999) clients bind
VOLUME_ROWS = 400_000
COLUMNS = ", ".join(f"{c} {t}" for c, t in cases.COLUMN_TYPES.items())


@pytest.fixture(scope="module")
def shard_servers(server):
    with sharding.Shards(2, base_port=SHARD_PORTS, server=server) as s:
        yield s


@pytest.fixture(scope="module")
def shards(shard_servers, server):
    for dsn in shard_servers.dsns:  # the shards run the coordinator's major (in its root, if it has one)
        with psycopg.connect(dsn, autocommit=True) as s:
            assert s.info.server_version // 10000 == server.major
            # what a shard's administrator does once so that scores can be written next to the rows
            s.execute("CREATE SCHEMA IF NOT EXISTS woe_anchor_scores")
    return shard_servers.dsns


def _comparable(conn, key):
    reg, cuts, maps, scores = artifacts.comparable(conn, key)
    reg.pop("source_relation")
    return reg, cuts, maps, scores


@pytest.fixture(scope="module")
def sharded_cases(dsn, shards):
    """tests/cases.py rows: generation 1 on shard A, 2 on shard B, 3 in a local partition."""
    rows = cases.make_rows(seed=91)
    placement = {shards[0]: [1], shards[1]: [2], None: [3]}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for shard, generations in placement.items():
            part = {k: v[np.isin(rows["generation"], generations)] for k, v in rows.items()}
            if shard is not None:
                with psycopg.connect(shard, autocommit=True) as s:
                    cases.load(s, "sh_src", part)
        sharding.shard_table(conn, "sh_src", COLUMNS, placement)
        cases.load(conn, "sh_local3", {k: v[rows["generation"] == 3] for k, v in rows.items()})
        conn.execute("INSERT INTO sh_src_p2 SELECT * FROM sh_local3")
        cases.load(conn, "sh_flat", rows)
    return rows


def test_a_sharded_fit_equals_the_reference_and_the_one_table_fit(conn, sharded_cases):
    conn.execute("SET client_min_messages = notice")
    key = fit(conn, "sh_src", model_key="sharded_cases", replace=True, activate=False)
    assert any(n.startswith("[shards] 2 of 3 leaves aggregated on their shards") for n in conn.notices)
    assert_matches(conn, key, reference.fit_reference(cases.as_reference(sharded_cases)))
    flat = fit(conn, "sh_flat", model_key="flat_cases", replace=True, activate=False)
    assert _comparable(conn, key) == _comparable(conn, flat), "bit-identical artifacts"


@pytest.mark.parametrize("options", [{"n_folds": 1}, {"oof": False}, {"n_folds": 7, "half_life_days": None}])
def test_other_fit_options_are_bit_identical_to_the_one_table_fit(conn, sharded_cases, options):
    """The quality groups come back as codes whose logits the coordinator computes: one fit, no fit
    out of fold, more folds."""
    key = fit(conn, "sh_src", model_key="sharded_options", replace=True, activate=False, **options)
    flat = fit(conn, "sh_flat", model_key="flat_options", replace=True, activate=False, **options)
    assert _comparable(conn, key) == _comparable(conn, flat)


def test_a_source_partitioned_on_two_levels_fans_out_to_its_leaves(conn, shards, sharded_cases):
    """Generations 1 and 2 under a partition that is itself partitioned over the two shards; 3 local."""
    conn.execute("DROP TABLE IF EXISTS sh_two_levels")
    conn.execute(f"CREATE TABLE sh_two_levels ({COLUMNS}) PARTITION BY LIST (generation)")
    conn.execute("CREATE TABLE sh_two_levels_12 PARTITION OF sh_two_levels FOR VALUES IN (1, 2) "
                 "PARTITION BY LIST (generation)")
    for g, dsn in ((1, shards[0]), (2, shards[1])):
        server = "shard_" + psycopg.conninfo.conninfo_to_dict(dsn)["port"]
        conn.execute(f"CREATE FOREIGN TABLE sh_two_levels_g{g} PARTITION OF sh_two_levels_12 FOR VALUES IN ({g}) "
                     f"SERVER {server} OPTIONS (table_name 'sh_src')")
    conn.execute("CREATE TABLE sh_two_levels_g3 PARTITION OF sh_two_levels FOR VALUES IN (3)")
    conn.execute("INSERT INTO sh_two_levels_g3 SELECT * FROM sh_local3")
    conn.notices.clear()
    key = fit(conn, "sh_two_levels", model_key="two_levels", replace=True, activate=False)
    assert any(n.startswith("[shards] 2 of 3 leaves aggregated on their shards") for n in conn.notices)
    assert len(shard_score_tables(conn, key)) == 2, "the scores stay on the shards"
    flat = fit(conn, "sh_flat", model_key="flat_cases", replace=True, activate=False)
    assert _comparable(conn, key) == _comparable(conn, flat)
    conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [key])
    conn.execute("DROP TABLE sh_two_levels")


def test_varints_written_by_sql_read_back_in_numpy(conn):
    values = [0, 1, 127, 128, 16383, 16384, 2**21 - 1, 2**21, 2**28, 2**35 + 3, 2**42 - 1, 2**42, 2**49 - 1]
    got = conn.execute(f"SELECT string_agg({passes.varint_sql('v')}, NULL ORDER BY o) "
                       "FROM unnest(%s::int8[]) WITH ORDINALITY AS u (v, o)", [values]).fetchone()[0]
    assert rowset.varints(bytes(got)).tolist() == values


def test_scoring_and_views_work_over_a_sharded_live_source(conn, sharded_cases):
    key = fit(conn, "sh_flat", model_key="flat_for_scoring", replace=True)
    query = "SELECT generation, listing_id, t0, woe_logit FROM ml.woe_anchor_score(%s, %s) ORDER BY 1, 2, 3"
    assert conn.execute(query, ["sh_src", key]).fetchall() == conn.execute(query, ["sh_flat", key]).fetchall()
    drop_live_views(conn)
    conn.execute("SELECT ml.woe_anchor_create_views('sh_src')")
    live = conn.execute("SELECT generation, listing_id, t0, woe_logit FROM ml.woe_anchor_scores_live_train_v "
                        "ORDER BY 1, 2, 3").fetchall()
    direct = conn.execute(query, ["sh_src", key]).fetchall()
    assert len(live) == len(direct) == len(sharded_cases["t0"])
    assert all(a[:3] == b[:3] and abs(a[3] - b[3]) <= 1e-9 * max(1.0, abs(b[3])) for a, b in zip(live, direct))
    drop_live_views(conn)


def test_without_dblink_rows_travel_and_the_result_is_the_same(conn, sharded_cases):
    conn.execute("DROP EXTENSION dblink")
    try:
        key = fit(conn, "sh_src", model_key="sharded_no_dblink", replace=True, activate=False)
    finally:
        conn.execute("CREATE EXTENSION dblink")
    assert any("dblink is not installed" in n for n in conn.notices)
    flat = fit(conn, "sh_flat", model_key="flat_cases", replace=True, activate=False)
    assert _comparable(conn, key) == _comparable(conn, flat)


def test_the_aggregation_runs_on_the_shards_and_returns_few_values(conn, shards):
    """600k generated listings: generations 1-2 on shard A, 3 on shard B, 4 local."""
    sharding.generate_sharded(conn, "vol_src", VOLUME_ROWS, {shards[0]: [1, 2], shards[1]: [3], None: [4]},
                              local_copy="vol_flat")
    conn.execute("SET client_min_messages = debug2")  # plpy.debug is DEBUG2
    try:
        key = fit(conn, "vol_src", model_key="sharded_volume", replace=True, activate=False)
    finally:
        conn.execute("SET client_min_messages = notice")
    summary = next(n for n in conn.notices if n.startswith("[shards]") and "they returned" in n)
    total_bytes = float(re.search(r"they returned \d+ values in ([\d.]+) kB", summary)[1]) * 1000
    passes = {name: (int(values), float(kb) * 1000, int(rounds))
              for name, values, kb, rounds in re.findall(r"(\w+) (\d+) \(([\d.]+) kB, (\d+) rounds?\)", summary)}
    print(f"\n{summary}; source rows {VOLUME_ROWS}")
    assert set(passes) == {"statistics", "sums", "scores", "quality"}, "every pass counted, scores on the shards"
    assert abs(sum(b for _, b, _ in passes.values()) - total_bytes) <= 100 * len(passes)
    assert passes["sums"][0] <= 0.05 * VOLUME_ROWS
    # the cutoff, the statistics with the percentiles' counts, a histogram and a fetch of what is left
    assert passes["statistics"][2] <= 4
    on_shards = 0
    for d in shards:
        with psycopg.connect(d) as s:
            on_shards += s.execute("SELECT pg_total_relation_size('vol_src')").fetchone()[0]
    assert total_bytes <= 0.02 * on_shards, "what came back is a small part of what the shards hold"
    # the statement a shard ran: its own plan groups the rows there
    sent = [n for n in conn.notices if n.startswith("[shards] shard_") and "GROUPING SETS" in n]
    assert sent, "the sums statement was sent to the shards"
    server, statement = re.match(r"\[shards\] shard_(\d+): (.*)", sent[0], re.S).groups()
    shard = next(d for d in shards if f"port={server}" in d)
    with psycopg.connect(shard) as s:
        plan = "\n".join(r[0] for r in s.execute("EXPLAIN (VERBOSE) " + statement).fetchall())
    assert re.search(r"(Mixed|Hash|Group)Aggregate", plan) and re.search(r"(Hash|Group) Key", plan)
    assert "Seq Scan on public.vol_src" in plan
    # and on the coordinator, EXPLAIN (VERBOSE) of the fan-out shows the remote SQL with its grouping
    local_plan = "\n".join(r[0] for r in conn.execute(
        "EXPLAIN (VERBOSE) SELECT * FROM dblink(%s, %s) AS t (grouping int[], key bigint[], n bigint[], sw numeric[])",
        [f"shard_{server}", statement]).fetchall())
    assert "Function Call: dblink(" in local_plan and "GROUP BY GROUPING SETS" in local_plan
    flat = fit(conn, "vol_flat", model_key="flat_volume", replace=True, activate=False)
    assert _comparable(conn, key) == _comparable(conn, flat)
    for k in (key, flat):
        conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [k])


def shard_score_tables(conn, key):
    """(shard DSN's port, remote table) of each table that holds the model's scores on a shard."""
    return conn.execute("SELECT o.option_value, t.remote_table FROM ml.woe_anchor_shard_scores AS t "
                        "JOIN pg_foreign_server AS s ON s.srvname = t.server "
                        "CROSS JOIN LATERAL pg_options_to_table(s.srvoptions) AS o "
                        "WHERE t.model_key = %s AND o.option_name = 'port' ORDER BY 1", [key]).fetchall()


def tables_on(shards, port, name):
    """Whether woe_anchor_scores.<name> exists on the shard at ``port``, and has a primary key."""
    with psycopg.connect(next(d for d in shards if f"port={port}" in d)) as s:
        return s.execute("SELECT count(*), bool_and(EXISTS (SELECT FROM pg_index i WHERE i.indrelid = c.oid "
                         "AND i.indisprimary)) FROM pg_class c WHERE c.relnamespace = "
                         "'woe_anchor_scores'::regnamespace AND c.relname = %s AND c.relkind = 'r'",
                         [name]).fetchone()


def all_shard_score_tables(shards):
    out = 0
    for d in shards:
        with psycopg.connect(d) as s:
            out += s.execute("SELECT count(*) FROM pg_class WHERE relnamespace = to_regnamespace('woe_anchor_scores') "
                             "AND relkind = 'r'").fetchone()[0]
    return out


def test_scores_can_be_written_next_to_the_rows(conn, shards, sharded_cases):
    """scores_on_shards: each shard writes its rows' scores; ml.woe_anchor_stored_scores reads them there."""
    flat = fit(conn, "sh_flat", model_key="flat_cases", replace=True, activate=False)
    key = fit(conn, "sh_src", model_key="scores_on_shards", replace=True, activate=False, scores_on_shards=True)
    assert artifacts.scores(conn, key) == artifacts.scores(conn, flat), "the same scores, read through the shards"
    remote = shard_score_tables(conn, key)
    assert len(remote) == 2
    for port, name in remote:
        assert tables_on(shards, port, name) == (1, True), "one scores table with its primary key on each shard"
    # the scores table itself never reaches a shard: a scan of it is local (generation 3's rows)
    assert conn.execute("SELECT count(*) FROM ml.woe_anchor_scores_v1 WHERE model_key = %s", [key]).fetchone()[0] \
        == sum(1 for k in artifacts.scores(conn, key) if k[0] == 3)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="scores_on_shards"):
        fit(conn, "sh_flat", model_key="not_sharded", scores_on_shards=True)
    assert conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [key]).fetchone()[0]
    for port, name in remote:
        assert tables_on(shards, port, name)[0] == 0, "dropping the model drops its shard tables"


def test_a_failing_fit_leaves_no_shard_tables_and_a_replace_keeps_the_old_ones_until_it_succeeds(conn, shards,
                                                                                                 sharded_cases):
    kept = fit(conn, "sh_src", model_key="on_shards_kept", replace=True, activate=False, scores_on_shards=True)
    before = all_shard_score_tables(shards)
    conn.execute("CREATE FUNCTION pg_temp.refuse() RETURNS trigger LANGUAGE plpgsql AS "
                 "$$BEGIN RAISE EXCEPTION 'injected failure'; END$$")
    conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON ml.woe_anchor_map_v1 "
                 "FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.refuse()")
    try:
        for key, replace in (("on_shards_failed", False), (kept, True)):
            with pytest.raises(psycopg.errors.RaiseException, match="injected failure"):
                fit(conn, "sh_src", model_key=key, replace=replace, activate=False, scores_on_shards=True)
    finally:
        conn.execute("DROP TRIGGER refuse ON ml.woe_anchor_map_v1")
    assert all_shard_score_tables(shards) == before, "the shards rolled their writes back; the kept model's remain"
    assert artifacts.scores(conn, kept), "the kept model's scores still read through its shard tables"
    conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [kept])
    assert all_shard_score_tables(shards) == before - 2


def test_an_activation_finds_no_shard_connection_and_shard_scores_need_a_superusers_schema(conn, shards,
                                                                                          sharded_cases):
    """The fit's shard connections (with the caller's rights there) are closed before its activation runs
    the hooks; schema woe_anchor_scores on a shard must be a superuser's, or its owner could rename it
    and put other objects under the names readers look up."""
    hooker = f"woe_sh_hook_{os.getpid()}"
    conn.execute(f"DROP ROLE IF EXISTS {hooker}")
    conn.execute(f"CREATE ROLE {hooker}")
    conn.execute("CREATE TABLE public.sh_hook_seen (connections text[])")
    conn.execute(f"GRANT INSERT ON public.sh_hook_seen TO {hooker}")
    conn.execute("CREATE FUNCTION public.sh_hook(k text) RETURNS void LANGUAGE sql SECURITY DEFINER "
                 "SET search_path = public, pg_catalog, pg_temp "
                 "AS 'INSERT INTO public.sh_hook_seen SELECT dblink_get_connections()'")
    conn.execute(f"ALTER FUNCTION public.sh_hook(text) OWNER TO {hooker}")
    conn.execute("SELECT ml.woe_anchor_add_activation_hook('public.sh_hook(text)')")
    before = all_shard_score_tables(shards)
    try:
        key = fit(conn, "sh_src", model_key="on_shards_hooked", replace=True, scores_on_shards=True)
        assert conn.execute("SELECT connections FROM public.sh_hook_seen").fetchall() == [(None,)]
        assert all_shard_score_tables(shards) == before + 2
        # an activation refused after the shards committed: the fit's shard tables are dropped again
        conn.execute("CREATE OR REPLACE FUNCTION public.sh_hook(k text) RETURNS void LANGUAGE plpgsql "
                     "SECURITY DEFINER SET search_path = public, pg_catalog, pg_temp "
                     "AS $$ BEGIN RAISE EXCEPTION 'not certified'; END $$")
        with pytest.raises(psycopg.errors.RaiseException, match="not certified"):
            fit(conn, "sh_src", model_key="on_shards_refused", scores_on_shards=True)
        assert all_shard_score_tables(shards) == before + 2
        conn.execute("DELETE FROM ml.woe_anchor_activation_hooks")
        # a schema woe_anchor_scores owned by a role that is not a superuser: neither written nor read
        with psycopg.connect(shards[0], autocommit=True) as s:
            s.execute(f"DROP ROLE IF EXISTS {hooker}")
            s.execute(f"CREATE ROLE {hooker}")
            s.execute(f"ALTER SCHEMA woe_anchor_scores OWNER TO {hooker}")
        try:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="owned by a superuser"):
                fit(conn, "sh_src", model_key="on_shards_squatted", scores_on_shards=True, activate=False)
            # left to the fit, the scores come here instead, and the NOTICE says why
            conn.notices.clear()
            here = fit(conn, "sh_src", model_key="on_shards_unready", activate=False)
            assert any("the scores were written here" in n and "owned by a superuser" in n for n in conn.notices)
            assert shard_score_tables(conn, here) == []
            assert conn.execute("SELECT count(*) FROM ml.woe_anchor_scores_v1 WHERE model_key = %s", [here]).fetchone() \
                == conn.execute("SELECT n_train_sold FROM ml.woe_anchor_model_registry_v1 WHERE model_key = %s",
                                [here]).fetchone()
            conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [here])
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="superuser's schema"):
                conn.execute("SELECT count(*) FROM ml.woe_anchor_stored_scores(%s)", [key])
        finally:
            with psycopg.connect(shards[0], autocommit=True) as s:
                s.execute("ALTER SCHEMA woe_anchor_scores OWNER TO CURRENT_USER")
                s.execute(f"DROP ROLE {hooker}")
        assert all_shard_score_tables(shards) == before + 2
        conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [key])
        assert all_shard_score_tables(shards) == before
    finally:
        conn.execute("DELETE FROM ml.woe_anchor_activation_hooks")
        conn.execute("DROP TABLE public.sh_hook_seen")
        conn.execute("DROP FUNCTION public.sh_hook(text)")
        conn.execute(f"DROP ROLE {hooker}")


def test_a_trainer_fits_a_sharded_source_with_only_the_documented_grants(conn, shard_servers, shards, sharded_cases):
    """A trainer that may read the parent table (not its partitions), with password user mappings;
    what its mapping wrote on the shards is dropped only by itself, and a reader without any
    mapping still scans the scores table."""
    trainer, reader, remote = f"woe_sh_trainer_{os.getpid()}", f"woe_sh_reader_{os.getpid()}", "woe_remote_trainer"
    password = "sharded-secret"
    shard_servers.add_login(remote, password)
    for d in shards:
        with psycopg.connect(d, autocommit=True) as s:
            s.execute(f"GRANT SELECT ON sh_src TO {remote}")
            s.execute(f"GRANT CREATE ON DATABASE postgres TO {remote}")
            s.execute("CREATE SCHEMA IF NOT EXISTS woe_anchor_scores")
            s.execute(f"REVOKE ALL ON SCHEMA woe_anchor_scores FROM {remote}")
            s.execute(f"GRANT CREATE ON SCHEMA woe_anchor_scores TO {remote}")  # USAGE comes below
    for role in (trainer, reader):
        conn.execute(f"DROP ROLE IF EXISTS {role}")
        conn.execute(f"CREATE ROLE {role}")
    conn.execute(f"GRANT SELECT ON sh_src TO {trainer}")
    conn.execute("SELECT ml.woe_anchor_grant(trainer => %s, reader => %s)", [trainer, reader])
    servers = [r[0] for r in conn.execute("SELECT srvname FROM pg_foreign_server WHERE srvname LIKE 'shard\\_%'")]
    for srv in servers:
        conn.execute(f"GRANT USAGE ON FOREIGN SERVER {srv} TO {trainer}")
        conn.execute(f"CREATE USER MAPPING FOR {trainer} SERVER {srv} OPTIONS (user '{remote}', password '{password}')")
    try:
        conn.execute(f"SET ROLE {trainer}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM sh_src_p2")  # the local partition: only through the parent
        # CREATE without USAGE on the shards' schema: a table could be made there but never keyed or read
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="use schema woe_anchor_scores"):
            fit(conn, "sh_src", model_key="trainer_no_usage", activate=False, scores_on_shards=True)
        conn.notices.clear()
        key = fit(conn, "sh_src", model_key="by_trainer_sharded", replace=True, activate=False)
        assert any(n.startswith("[shards] 2 of 3 leaves aggregated on their shards") and "written here" in n
                   and "use schema woe_anchor_scores" in n for n in conn.notices)
        assert shard_score_tables(conn, key) == []
        conn.execute("RESET ROLE")
        for d in shards:
            with psycopg.connect(d, autocommit=True) as s:
                s.execute(f"GRANT USAGE ON SCHEMA woe_anchor_scores TO {remote}")
        conn.execute(f"SET ROLE {trainer}")
        mine = fit(conn, "sh_src", model_key="trainer_on_shards", replace=True, activate=False, scores_on_shards=True)
        theirs = fit(conn, "sh_src", model_key="trainer_on_shards_2", replace=True, activate=False,
                     scores_on_shards=True)
        conn.execute("RESET ROLE")
        flat = fit(conn, "sh_flat", model_key="flat_cases", replace=True, activate=False)
        (reg, *rest), (flat_reg, *flat_rest) = _comparable(conn, key), _comparable(conn, flat)
        assert (reg.pop("fitted_by"), flat_reg.pop("fitted_by")) == (trainer, conn.info.user)
        assert (reg, rest) == (flat_reg, flat_rest), "bit-identical artifacts"
        conn.execute(f"SET ROLE {trainer}")
        assert artifacts.scores(conn, mine) == artifacts.scores(conn, flat)
        conn.execute(f"SET ROLE {reader}")
        assert conn.execute("SELECT count(*) FROM ml.woe_anchor_scores_v1").fetchone()[0] > 0
        with pytest.raises(psycopg.Error, match="user mapping"):
            conn.execute("SELECT count(*) FROM ml.woe_anchor_stored_scores(%s)", [mine])
        conn.execute("RESET ROLE")
        # a superuser drops the trainer's model: its shard tables stay (the admin's mapping did not write them)
        tables = shard_score_tables(conn, theirs)
        conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [theirs])
        assert all(tables_on(shards, port, name)[0] == 1 for port, name in tables)
        # the trainer drops its own with its own mapping
        tables = shard_score_tables(conn, mine)
        conn.execute(f"SET ROLE {trainer}")
        assert conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [mine]).fetchone()[0]
        conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [key])
        conn.execute("RESET ROLE")
        assert all(tables_on(shards, port, name)[0] == 0 for port, name in tables)
    finally:
        conn.execute("RESET ROLE")
        for srv in servers:
            conn.execute(f"DROP USER MAPPING IF EXISTS FOR {trainer} SERVER {srv}")
        for role in (trainer, reader):
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")
