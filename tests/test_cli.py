"""The woe-anchor command (issue #6, item 6), run as a real process against the test database."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cases


def _cli(dsn, *args):
    exe = Path(sys.executable).parent / "woe-anchor"
    if not exe.exists():
        found = shutil.which("woe-anchor")
        if found is None:
            pytest.fail("the woe-anchor command is not installed (harness/run.sh installs it into the venv)")
        exe = Path(found)
    env = dict(os.environ, WOE_ANCHOR_DSN="")
    return subprocess.run([str(exe), "--dsn", dsn, *args], capture_output=True, text=True, env=env, timeout=300)


def test_fit_list_activate_and_drop_from_the_command_line(conn, dsn):
    cases.load(conn, "cli_src", cases.make_rows(seed=99, n=900))
    fitted = _cli(dsn, "fit", "cli_src", "--model-key", "cli_model", "--n-folds", "3", "--no-activate", "--replace")
    assert fitted.returncode == 0, fitted.stderr
    lines = fitted.stdout.splitlines()
    assert lines[-1] == "cli_model"
    progress = [line for line in lines if line.startswith("[") and "s] [woe]" in line]
    assert any("trained slow21 WOE anchor" in line for line in progress), "the fit's notices, as it runs"
    listed = _cli(dsn, "models")
    assert listed.returncode == 0 and "cli_model" in listed.stdout and listed.stdout.startswith("model_key")
    assert _cli(dsn, "activate", "cli_model").returncode == 0
    assert conn.execute("SELECT is_active FROM ml.woe_anchor_model_registry_v1 "
                        "WHERE model_key = 'cli_model'").fetchone()[0] is True
    bad = _cli(dsn, "fit", "no_such_table")
    assert bad.returncode == 2 and "no_such_table" in bad.stderr and "Traceback" not in bad.stderr
    assert _cli(dsn, "drop", "cli_model").returncode == 0
    assert _cli(dsn, "drop", "cli_model").returncode == 1
