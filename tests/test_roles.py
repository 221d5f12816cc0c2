"""The grant helper's two roles: a trainer fits from what it may read, a reader only reads and scores."""
from __future__ import annotations

import os

import psycopg
import pytest

import artifacts
import cases
from conftest import fit


@pytest.fixture
def roles(conn):
    """A trainer and a reader role (NOLOGIN; the tests SET ROLE to them), dropped afterwards."""
    suffix = os.getpid()
    trainer, reader = f"woe_trainer_{suffix}", f"woe_reader_{suffix}"
    for r in (trainer, reader):
        conn.execute(f"DROP ROLE IF EXISTS {r}")
        conn.execute(f"CREATE ROLE {r} NOLOGIN")
    cases.load(conn, "roles_src", cases.make_rows(seed=71, n=800))
    cases.load(conn, "roles_secret", cases.make_rows(seed=72, n=800))
    conn.execute(f"GRANT SELECT ON roles_src TO {trainer}, {reader}")
    conn.execute("SELECT ml.woe_anchor_grant(trainer => %s, reader => %s)", [trainer, reader])
    yield trainer, reader
    conn.execute("RESET ROLE")
    for r in (trainer, reader):
        conn.execute(f"DROP OWNED BY {r}")
        conn.execute(f"DROP ROLE {r}")


def test_a_trainer_fits_from_what_it_may_read_and_nothing_else(conn, roles):
    trainer, _ = roles
    conn.execute(f"SET ROLE {trainer}")
    key = fit(conn, "roles_src", model_key="by_trainer", replace=True)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        fit(conn, "roles_secret", model_key="not_allowed")
    conn.execute("RESET ROLE")
    assert artifacts.registry(conn, key)["fitted_by"] == trainer
    assert artifacts.active_keys(conn) == [key]
    assert artifacts.registry(conn, "not_allowed") is None
    # the partition is the extension's: its fitter cannot alter it (docs/security.md)
    assert conn.execute("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = %s::regclass",
                        [artifacts.partition(conn, key)]).fetchone()[0] \
        == conn.execute("SELECT pg_get_userbyid(extowner) FROM pg_extension WHERE extname = 'woe_anchor'").fetchone()[0]


def test_a_trainer_manages_its_own_models_and_no_others(conn, roles):
    trainer, _ = roles
    other = fit(conn, "roles_src", model_key="by_superuser", activate=False, replace=True)
    conn.execute(f"SET ROLE {trainer}")
    own = fit(conn, "roles_src", model_key="by_trainer_own", activate=False, replace=True)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="fitted by"):
        conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [other])
    assert conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [own]).fetchone()[0] is True
    conn.execute("RESET ROLE")
    assert not any(artifacts.rows_of(conn, own).values())
    assert artifacts.rows_of(conn, other)["woe_anchor_model_registry_v1"] == 1
    conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [other])


def test_a_reader_scores_but_cannot_fit_or_write(conn, roles):
    trainer, reader = roles
    conn.execute(f"SET ROLE {trainer}")
    key = fit(conn, "roles_src", model_key="for_reader", replace=True)
    conn.execute(f"SET ROLE {reader}")
    n = conn.execute("SELECT count(*) FROM ml.woe_anchor_score('roles_src', %s)", [key]).fetchone()[0]
    assert n == 800
    assert conn.execute("SELECT count(*) FROM ml.woe_anchor_training_features(%s)", [key]).fetchone()[0] == 800
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        fit(conn, "roles_src", model_key="reader_fit")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("DELETE FROM ml.woe_anchor_model_registry_v1")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT ml.woe_anchor_activate(%s)", [key])


def test_a_trainer_writes_band_schemas_and_a_reader_only_reads_them(conn, roles):
    trainer, reader = roles
    conn.execute("DELETE FROM ml.woe_anchor_model_registry_v1 WHERE band_schema_version = 7")
    conn.execute("DELETE FROM ml.woe_anchor_band_schemas WHERE version = 7")
    conn.execute(f"SET ROLE {trainer}")
    conn.execute("SELECT ml.woe_anchor_copy_band_schema(1, 7)")
    assert conn.execute("SELECT ml.woe_anchor_drop_band(7, 'sale')").fetchone()[0] is True
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("DELETE FROM ml.woe_anchor_bands WHERE schema_version = 7 AND band_name = 'bat'")
    key = fit(conn, "roles_src", model_key="trainer_schema_7", band_schema_version=7, replace=True, activate=False)
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
        conn.execute("SELECT ml.woe_anchor_drop_band(7, 'bat')")
    conn.execute(f"SET ROLE {reader}")
    assert conn.execute("SELECT ml.woe_anchor_band_schema(7) -> 'bands' @> '[{\"band_name\": \"bat\"}]'"
                        ).fetchone()[0]
    assert conn.execute("SELECT count(*) FROM ml.woe_anchor_band_schema_problems(7, 'roles_src')").fetchone()[0] == 0
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT ml.woe_anchor_copy_band_schema(7, 70)")
    conn.execute("RESET ROLE")
    conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [key])
    conn.execute("DELETE FROM ml.woe_anchor_band_schemas WHERE version = 7")


def test_a_superusers_fit_applies_retention_to_its_own_models_only(conn, roles):
    """The retention policy of every fit is over the fitter's own models: a superuser's (scheduled)
    fit must not prune every team's."""
    trainer, _ = roles
    conn.execute("DELETE FROM ml.woe_anchor_policy")
    conn.execute(f"SET ROLE {trainer}")
    theirs = [fit(conn, "roles_src", model_key=f"ret_trainer_{i}", activate=False, replace=True) for i in range(2)]
    conn.execute("RESET ROLE")
    try:
        conn.execute("SELECT ml.woe_anchor_set_policy('keep_models', 1)")
        mine = [fit(conn, "roles_src", model_key=f"ret_admin_{i}", activate=False, replace=True) for i in range(2)]
        stored = {r[0] for r in conn.execute("SELECT model_key FROM ml.woe_anchor_model_registry_v1 "
                                             "WHERE model_key LIKE 'ret\\_%'")}
        assert stored == set(theirs) | {mine[1]}
    finally:
        conn.execute("DELETE FROM ml.woe_anchor_policy")
        conn.execute("DELETE FROM ml.woe_anchor_model_registry_v1 WHERE model_key LIKE 'ret\\_%'")


@pytest.mark.parametrize("call, error", [
    ("SELECT ml.woe_anchor_grant(NULL, NULL)", psycopg.errors.NullValueNotAllowed),
    ("SELECT ml.woe_anchor_revoke(NULL)", psycopg.errors.NullValueNotAllowed),
    ("SELECT ml.woe_anchor_grant(0::oid::regrole)", psycopg.errors.UndefinedObject),
    ("SELECT ml.woe_anchor_grant(reader => 4294967294::oid::regrole)", psycopg.errors.UndefinedObject),
    ("SELECT ml.woe_anchor_revoke(0::oid::regrole)", psycopg.errors.UndefinedObject),
])
def test_granting_or_revoking_no_role_says_so(conn, call, error):
    """Not a GRANT statement's syntax error with the extension's internals quoted."""
    with pytest.raises(error) as err:
        conn.execute(call)
    assert "GRANT" not in str(err.value) and "REVOKE" not in str(err.value)
