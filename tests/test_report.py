"""The model report: one self-contained HTML page, rendered by a real headless Chromium."""
from __future__ import annotations

import datetime
import re
import shutil
import subprocess
from html import unescape

import numpy as np
import psycopg
import pytest
from PIL import Image

import cases
from conftest import fit
from test_cli import _cli
from woe_anchor_harness import datagen, plots

KEY = "report <b>model</b> & 'quotes'"   # every model key is text to escape, never markup


@pytest.fixture(scope="module")
def report_model(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        datagen.generate_listings(conn, "report_src", rows=30_000, days=90)
        fit(conn, "report_src", model_key=KEY, replace=True, activate=False)
    return KEY


def _write(dsn, tmp_path, key) -> str:
    path = tmp_path / "report.html"
    done = _cli(dsn, "report", key, "-o", str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(path)
    return path.read_text(encoding="utf-8")


def _titles(html: str) -> list[str]:
    return [unescape(t) for t in re.findall(r"<title>(.*?)</title>", html)]


def test_report_is_self_contained_and_escapes_user_text(dsn, report_model, tmp_path):
    html = _write(dsn, tmp_path, report_model)
    assert "<script" not in html.lower() and "<link" not in html.lower()
    # nothing is fetched: no src/href attributes, no url(...) in styles
    assert not re.search(r"\b(src|href)\s*=|url\(", html, re.IGNORECASE)
    assert "<b>model</b>" not in html and "report &lt;b&gt;model&lt;/b&gt; &amp; &#x27;quotes&#x27;" in html


def test_report_shows_the_stored_artifacts(conn, dsn, report_model, tmp_path):
    html = _write(dsn, tmp_path, report_model)
    titles = _titles(html)
    final = conn.execute("SELECT band_name, band_value, woe, n_rows FROM ml.woe_anchor_map_v1 "
                         "WHERE model_key = %s AND fold_id IS NULL", [report_model]).fetchall()
    assert final
    for band, value, woe, n_rows in final:  # every final map row is drawn with its WOE and learned rows
        assert f"{band} = {value}: WOE {woe:.4f}, {n_rows} learned rows" in titles
    n_fold_rows = conn.execute("SELECT count(*) FROM ml.woe_anchor_map_v1 WHERE model_key = %s "
                               "AND fold_id IS NOT NULL", [report_model]).fetchone()[0]
    assert sum(t.startswith("fold WOE ") for t in titles) == n_fold_rows

    # the score histogram holds every OOF-scored row once, split by the label read from the source
    n_pos, n_neg = conn.execute("""
        SELECT count(*) FILTER (WHERE s.duration_hours >= 504 OR s.final_status = 'older21days'),
               count(*) FILTER (WHERE NOT coalesce(s.duration_hours >= 504 OR s.final_status = 'older21days', false))
        FROM report_src AS s
        -- SPEC's default cutoff, from the source: not the engine's stored one
        WHERE s.sold_time <= (SELECT max(sold_time) - interval '7 days' FROM report_src)""").fetchone()
    bars = [re.match(r"(not slow21|slow21): (\d+) rows with logit", t) for t in titles]
    drawn = {"slow21": 0, "not slow21": 0}
    for m in filter(None, bars):
        drawn[m[1]] += int(m[2])
    assert drawn == {"slow21": n_pos, "not slow21": n_neg}

    # calibration: the dots' row-weighted observed rate is the OOF set's slow21 rate
    dots = [re.match(r"OOF \(train\): mean p ([\d.]+), observed ([\d.]+), (\d+) rows", t) for t in titles]
    dots = np.array([[float(m[2]), int(m[3])] for m in dots if m])
    assert dots[:, 1].sum() == n_pos + n_neg
    assert np.average(dots[:, 0], weights=dots[:, 1]) == pytest.approx(n_pos / (n_pos + n_neg), abs=1e-3)

    reg = conn.execute("SELECT oof_auc, insample_auc, eval_auc FROM ml.woe_anchor_model_registry_v1 "
                       "WHERE model_key = %s", [report_model]).fetchone()
    for name, auc in zip(("OOF", "in-sample", "eval"), reg):
        assert f"{name}: {auc:.4f}" in titles


def test_the_report_is_the_same_in_any_session(conn, dsn, report_model, tmp_path, monkeypatch):
    """A role's or PGOPTIONS' DateStyle and TimeZone change nothing: the times are UTC."""
    cutoff = conn.execute("SELECT train_cutoff_ts FROM ml.woe_anchor_model_registry_v1 WHERE model_key = %s",
                          [report_model]).fetchone()[0].astimezone(datetime.timezone.utc)
    plain = _write(dsn, tmp_path, report_model)
    monkeypatch.setenv("PGOPTIONS", "-c DateStyle=German -c TimeZone=Asia/Kolkata")
    odd = _write(dsn, tmp_path, report_model)
    # all but the minute the report was written
    written = re.compile(r"report written [^<]*")
    assert written.sub("", odd) == written.sub("", plain)
    assert str(cutoff) in odd


def test_report_of_a_model_without_score_bins(conn, dsn, report_model, tmp_path):
    """Models imported from the Python trainer have no score bins: the page says so and still renders."""
    kept = conn.execute("SELECT score_bins FROM ml.woe_anchor_model_registry_v1 WHERE model_key = %s",
                        [report_model]).fetchone()[0]
    assert kept is not None
    conn.execute("SET woe_anchor.artifact_write = on")  # what an imported model looks like
    conn.execute("UPDATE ml.woe_anchor_model_registry_v1 SET score_bins = NULL WHERE model_key = %s", [report_model])
    try:
        html = _write(dsn, tmp_path, report_model)
    finally:
        conn.execute("UPDATE ml.woe_anchor_model_registry_v1 SET score_bins = %s WHERE model_key = %s",
                     [psycopg.types.json.Jsonb(kept), report_model])
        conn.execute("RESET woe_anchor.artifact_write")
    assert "records no score bins" in html and "Calibration" not in html


def test_report_of_a_model_fitted_without_oof(conn, dsn, report_model, tmp_path):
    """OOF off: the calibration and histogram show the in-sample scores, and no fold spread is drawn."""
    key = fit(conn, "report_src", model_key="report_no_oof", oof=False, replace=True, activate=False)
    html = _write(dsn, tmp_path, key)
    titles = _titles(html)
    n_train = conn.execute("SELECT n_train_sold FROM ml.woe_anchor_model_registry_v1 WHERE model_key = %s",
                           [key]).fetchone()[0]
    dots = [re.match(r"in-sample \(train\): mean p [\d.]+, observed [\d.]+, (\d+) rows", t) for t in titles]
    assert sum(int(m[1]) for m in dots if m) == n_train
    assert "No per-fold fits" in html and not any(t.startswith("fold WOE ") for t in titles)


def test_missing_model_is_a_clear_error(dsn, tmp_path):
    done = _cli(dsn, "report", "no_such_model", "-o", str(tmp_path / "x.html"))
    assert done.returncode != 0 and "no_such_model" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "x.html").exists()


def _hex(color: str) -> tuple[int, int, int]:
    return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))


def test_chromium_renders_the_report(dsn, report_model, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium package is needed (harness/run.sh test installs it)"
    html = _write(dsn, tmp_path, report_model)
    png = tmp_path / "report.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1200,2400", f"--screenshot={png}", (tmp_path / "report.html").as_uri()],
                   check=True, capture_output=True, timeout=120, cwd=tmp_path)
    image = np.asarray(Image.open(png).convert("RGB"))
    assert image.shape == (2400, 1200, 3)
    pixels = {name: int((image == _hex(color)).all(axis=2).sum())
              for name, color in (("positive", plots.POSITIVE), ("negative", plots.NEGATIVE),
                                  ("fold", plots.FOLD_DOT))}
    # the charts were drawn, not shown as text: thousands of pixels in each of the plot colours
    assert min(pixels.values()) > 2000, pixels
    assert html.count("<svg") >= 5


def test_bands_share_one_scale_and_show_their_cut_points_rates_and_iv(conn, dsn, report_model, tmp_path):
    html = _write(dsn, tmp_path, report_model)
    charts = re.findall(r"<svg[^>]*>.*?</svg>", html, re.DOTALL)
    band_charts = [c for c in charts if "WOE per value of band" in c]
    assert len(band_charts) == 10
    axes = {tuple(re.findall(r'text-anchor="middle" font-size="11"[^>]*>([^<]*)<', c)) for c in band_charts}
    assert len(axes) == 1 and len(next(iter(axes))) >= 3, "every band on the same WOE axis"
    # the price band's cut points by their labels, with the learned values
    t1 = conn.execute("SELECT dsold_t1 FROM ml.woe_anchor_model_registry_v1 WHERE model_key = %s",
                      [report_model]).fetchone()[0]
    cheap = re.search(r"<td>dSold_cheap</td><td>≤ (-?[\d.]+) \(dsold_t1\)</td>", html)
    assert cheap and abs(float(cheap[1]) - t1) < 1e-4
    assert "<td>cond_hi</td><td>≥ 0.9" in html and "<td>cond_missing</td><td>NULL</td>" in html
    # per value: its slow21 rate and IV share, adding up to the band's IV
    quality = conn.execute("SELECT band_quality FROM ml.woe_anchor_model_registry_v1 WHERE model_key = %s",
                           [report_model]).fetchone()[0]
    section = html.split("<h3>cond</h3>")[1].split("<h3>")[0]
    ivs = [float(x) for x in re.findall(r"<td class='num'>(-?[\d.]+)</td></tr>", section)]
    assert abs(sum(ivs) - quality["cond"]["iv"]) < 5e-4 * len(ivs)
    for label in ("eps", "slow21 threshold (hours)", "learned from duration (hours)"):
        assert f"<th>{label}</th>" in html


def test_report_shows_what_monitoring_recorded(conn, dsn, report_model, tmp_path):
    """Notes, PSI per band per monitor run, realized performance per week, alerts and activations:
    each recorded value is on the page."""
    key = "report monitored"
    fit(conn, "report_src", model_key=key, replace=True)
    try:
        conn.execute("SELECT ml.woe_anchor_annotate(%s, 'watched <closely>', ARRAY['night'], true)", [key])
        conn.execute("SELECT * FROM ml.woe_anchor_monitor('report_src', %s, window_days => 3650, psi_limit => 1e-6, "
                     "channel => NULL)", [key])
        html = _write(dsn, tmp_path, key)
        text = unescape(re.sub(r"<[^>]+>", " ", html))
        assert "watched <closely>" in text and "<closely>" not in html, "notes, escaped"
        psi = conn.execute("SELECT band_name, psi FROM ml.woe_anchor_psi WHERE model_key = %s", [key]).fetchall()
        assert len(psi) == 10
        for band, value in psi:
            assert re.search(rf"{band}\s+{value:.4f}", text), band
        weeks = conn.execute("SELECT week::text, n_rows, auc FROM ml.woe_anchor_realized WHERE model_key = %s",
                             [key]).fetchall()
        assert weeks and all(re.search(rf"{w}\s+{n}\s+\d+\s+{a:.4f}", text) for w, n, a in weeks if a is not None)
        assert text.count("drift") >= 1 and "Activations" in text and "activate" in text
        recorder = conn.execute("SELECT current_user").fetchone()[0]
        assert f"by {recorder}" in text, "each run shows who recorded it"
        assert "Alerts" in text
        # a later model of the same key is another model: the alerts of this one are not its
        fit(conn, "report_src", model_key=key, replace=True)
        assert "Alerts" not in unescape(re.sub(r"<[^>]+>", " ", _write(dsn, tmp_path, key)))
    finally:
        conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [key])
        conn.execute("DELETE FROM ml.woe_anchor_alerts WHERE model_key = %s", [key])


def test_the_report_shows_no_control_or_direction_character_another_role_wrote(conn, dsn, report_model, tmp_path):
    """A tag with a right-to-left override would render reversed, an escape byte would land in the file:
    the page writes them as the terminal does, as their escapes."""
    conn.execute("SELECT ml.woe_anchor_annotate(%s, %s, %s)",
                 [report_model, "desc\x1b]0;pwned\x07", ["prod\u202egnp.exe", "zero\u200bwidth"]])
    try:
        html = _write(dsn, tmp_path, report_model)
    finally:
        conn.execute("SELECT ml.woe_anchor_annotate(%s, '', '{}')", [report_model])
    assert not any(c in html for c in "\x1b\x07\u202e\u200b")
    assert "prod\\u202egnp.exe" in html and "zero\\u200bwidth" in html and "desc\\x1b]0;pwned\\x07" in html


def test_a_model_cut_off_past_year_9999_reports(conn, dsn, tmp_path):
    """Times Python cannot hold (a source's sale in year 294276 makes the cutoff one) are shown as the
    server writes them, in the report and in the tables of the command line."""
    cases.load(conn, "report_far", cases.make_rows(seed=107, n=900))
    conn.execute("UPDATE report_far SET t0 = '294276-12-31', sold_time = '294276-12-31' "
                 "WHERE listing_id = (SELECT max(listing_id) FROM report_far)")
    key = fit(conn, "report_far", model_key="report_far", replace=True, activate=False)
    try:
        html = _write(dsn, tmp_path, key)
        assert "294276-12-24 00:00:00+00" in html
        realized = _cli(dsn, "realized", "report_far", "--model-key", key)
        assert realized.returncode == 0 and "294276-12-" in realized.stdout, realized.stderr
    finally:
        conn.execute("SELECT ml.woe_anchor_drop_model(%s)", [key])
