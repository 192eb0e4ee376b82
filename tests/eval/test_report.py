"""``fedkb report``: loading eval JSON and metrics.csv, the Rich tables, the self-contained HTML page."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from eval.report import render_terminal, write_html
from eval.report_load import ReportError, load_report_data
from tests.fresh_imports import imported_after

FIXTURE = Path(__file__).parent / "fixtures" / "server"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMG_RE = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def terminal_text(data) -> str:
    console = Console(record=True, width=120, color_system=None)
    render_terminal(data, console)
    return console.export_text()


@pytest.fixture(scope="module")
def fixture_html(tmp_path_factory) -> str:
    path = write_html(load_report_data(FIXTURE), tmp_path_factory.mktemp("html") / "out" / "report.html")
    return path.read_text(encoding="utf-8")


def test_loads_versions_sorted_tolerating_missing_keys():
    data = load_report_data(FIXTURE)
    assert [e.version for e in data.evals] == ["0001", "0002"]
    old, new = data.evals
    assert old.privacy is None and old.oov_rate is None and old.histogram_counts == ()
    assert "centralized_lstm" not in old.baselines
    assert new.recall_at_1 == pytest.approx(0.12)
    assert new.baselines["centralized_lstm"].train_tokens == 150000
    assert sum(new.histogram_counts) == new.devices == 120
    assert [r.round for r in data.rounds] == [1, 2, 3, 4, 5, 6]
    assert data.rounds[-1].loss == pytest.approx(5.8873)


def test_versions_sort_numerically_and_rerun_rounds_keep_last_row(tmp_path):
    server = tmp_path / "server"
    (server / "evals").mkdir(parents=True)
    for v in ("0010", "0009"):
        (server / "evals" / f"{v}.json").write_text(json.dumps({"model_version": v, "recall_at_1": 0.1}))
    (server / "metrics.csv").write_text("round,loss,extra\n1,5.0,x\n2,4.0,y\n2,3.5,z\n3,,w\n")
    data = load_report_data(server)
    assert [e.version for e in data.evals] == ["0009", "0010"]
    assert [(r.round, r.loss) for r in data.rounds] == [(1, 5.0), (2, 3.5), (3, None)]


def test_terminal_shows_latest_table_baselines_and_trend():
    out = terminal_text(load_report_data(FIXTURE))
    assert "latest version 0002 (round 6, 120 devices, 12,345 predictions)" in out
    for name in ("global LSTM alone", "+ personal model", "+ private n-grams = product", "unigram",
                 "KN trigram (pooled reference)", "LSTM, central (pooled reference)"):
        assert name in out
    row = next(line for line in out.splitlines() if "global LSTM alone" in line)
    assert re.search(r"12\.0%.*21\.0%.*26\.0%.*3\.0%", row)
    product = next(line for line in out.splitlines() if "= product" in line)
    assert re.search(r"15\.2%.*25\.1%.*30\.1%.*1\.5%", product)
    lstm = next(line for line in out.splitlines() if "LSTM, central" in line)
    assert re.search(r"14\.3%.*23\.8%.*29\.1%", lstm)
    assert "perplexity: 164.0" in out and "p50 12.0%" in out
    assert "promoted (recall@1 up 3.7 points over 0001)" in out
    assert "privacy: no DP" in out
    assert "trend over versions" in out
    trend_0001 = next(line for line in out.splitlines() if line.strip("│ ").startswith("0001"))
    assert re.search(r"3\s.*8\.3%.*15\.2%.*19\.0%.*118.*yes", trend_0001)


def test_terminal_privacy_epsilon(tmp_path):
    server = tmp_path / "server"
    shutil.copytree(FIXTURE, server)
    path = server / "evals" / "0002.json"
    raw = json.loads(path.read_text())
    raw["privacy"] = {"epsilon": 3.5, "delta": 1e-5, "accountant": "rdp", "noise_multiplier": 1.1, "rounds": 6}
    path.write_text(json.dumps(raw))
    assert "privacy: ε = 3.5 (δ = 1e-05, rdp)" in terminal_text(load_report_data(server))


def test_empty_server_dir_says_what_to_run(tmp_path):
    out = terminal_text(load_report_data(tmp_path / "nothing"))
    assert "fedkb train" in out and "fedkb eval" in out
    # metrics but no eval: only `fedkb eval` is missing
    (tmp_path / "server").mkdir()
    shutil.copy(FIXTURE / "metrics.csv", tmp_path / "server" / "metrics.csv")
    out = terminal_text(load_report_data(tmp_path / "server"))
    assert "Run `fedkb eval`" in out and "6 training rounds" in out and "fedkb train" not in out
    assert "privacy ledger: no release recorded" in out  # this fixture has no ledger


def test_empty_server_dir_still_writes_a_page(tmp_path):
    page = write_html(load_report_data(tmp_path / "nothing"), tmp_path / "r.html").read_text()
    assert "No evaluation yet" in page and "fedkb eval" in page
    assert "<img" not in page


def test_html_embeds_four_png_plots(fixture_html):
    images = IMG_RE.findall(fixture_html)
    assert len(images) == 4  # recall@1 and @3 per version, loss per round, per-device histogram
    for b64 in images:
        assert base64.b64decode(b64, validate=True).startswith(PNG_SIGNATURE)
    for alt in ("recall@1 per version", "recall@3 per version", "training loss per round",
                "histogram of per-device recall@1"):
        assert f'alt="{alt}"' in fixture_html


def test_html_is_self_contained(fixture_html):
    assert "http://" not in fixture_html and "https://" not in fixture_html
    assert not re.search(r"<script|<link|@import|url\(", fixture_html, re.IGNORECASE)
    srcs = re.findall(r'src="([^"]*)"', fixture_html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<style>" in fixture_html


def test_html_has_header_tables_and_settings(fixture_html):
    assert "latest version 0002" in fixture_html and "2026-11-30 13:00 UTC" in fixture_html
    assert "<td>global LSTM alone</td><td>12.0%</td><td>21.0%</td><td>26.0%</td><td>3.0%</td>" in fixture_html
    assert "<td>LSTM, central (pooled reference)</td><td>14.3%</td>" in fixture_html
    assert 'id="settings"' in fixture_html
    for key, value in (("server_optimizer", "adam"), ("clients_per_round", "10"), ("lstm_units", "256"),
                       ("cifg", "yes"), ("summary", "no DP")):
        assert f"<td>{key}</td><td>{value}</td>" in fixture_html


def test_html_escapes_file_content(tmp_path):
    server = tmp_path / "server"
    shutil.copytree(FIXTURE, server)
    path = server / "evals" / "0002.json"
    raw = json.loads(path.read_text())
    raw["promotion"]["reason"] = "<script>alert(1)</script>"
    path.write_text(json.dumps(raw))
    page = write_html(load_report_data(server), tmp_path / "r.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_write_html_is_atomic_and_creates_parents(tmp_path):
    target = tmp_path / "a" / "b" / "report.html"
    assert write_html(load_report_data(FIXTURE), target) == target
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]  # no temp file left


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"recall_at_1": "high"}', "'recall_at_1' should be a number"),
    ('{"baselines": {"unigram": {"recall_at_3": [0.1]}}}', "baselines.unigram"),
    ('{"per_device_recall_at_1": {"histogram": {"edges": [0, 1], "counts": [1, 2]}}}', "counts but"),
    ('{"privacy": {"epsilon": "small"}}', "privacy: 'epsilon' should be a number"),
    ('{"promotion": {"promoted": "maybe"}}', "promotion.promoted"),
])
def test_malformed_eval_raises_report_error_naming_the_file(tmp_path, content, message):
    server = tmp_path / "server"
    shutil.copytree(FIXTURE, server)
    (server / "evals" / "0003.json").write_text(content)
    with pytest.raises(ReportError, match=message) as err:
        load_report_data(server)
    assert "0003.json" in str(err.value)


def test_metrics_without_round_column_raises(tmp_path):
    (tmp_path / "metrics.csv").write_text("loss,clients\n1.0,3\n")
    with pytest.raises(ReportError, match="metrics.csv: no 'round' column"):
        load_report_data(tmp_path)


def test_import_is_light():
    out = imported_after("import eval.report", ("tensorflow", "matplotlib", "rich"))
    assert out.strip() == "[]"


def test_terminal_shows_personalization_before_and_after(tmp_path):
    server = tmp_path / "server"
    shutil.copytree(FIXTURE, server)
    path = server / "evals" / "0002.json"
    raw = json.loads(path.read_text())
    raw["personalization"] = {"devices": 4, "global_recall_at_1": 0.1, "personal_recall_at_1": 0.115,
                              "relative_change_at_1": 0.15}
    path.write_text(json.dumps(raw))
    out = terminal_text(load_report_data(server))
    assert "4 devices: recall@1 10.0% global → 11.5% personal (+15.0% relative)" in out


# -- the pooled-text references live outside server/ ---------------------------------------------
def _home_without_references(tmp_path) -> Path:
    """A copy of the fixture's server/ whose evaluations hold no reference rows (as `fedkb eval` writes now)."""
    server = tmp_path / "home" / "server"
    shutil.copytree(FIXTURE, server)
    for path in (server / "evals").glob("*.json"):
        raw = json.loads(path.read_text())
        raw.pop("baselines", None)
        path.write_text(json.dumps(raw))
    return tmp_path / "home"


def test_without_references_the_report_has_no_reference_rows_and_says_none_were_computed(tmp_path):
    home = _home_without_references(tmp_path)
    data = load_report_data(home / "server", references_dir=home / "references")
    out = terminal_text(data)
    assert "pooled reference" not in out and "references: none computed" in out
    assert "raw text and token ids: never" in out
    html = write_html(data, tmp_path / "r.html").read_text()
    assert "pooled reference" not in html and "none computed" in html and "never (they stay" in html
    assert html.count("data:image/png;base64,") >= 3  # the plots are drawn without reference lines


def test_reference_rows_come_from_the_references_folder_and_the_disclosure_says_text_was_pooled(tmp_path):
    home = _home_without_references(tmp_path)
    refs = home / "references"
    (refs / "evals").mkdir(parents=True)
    (refs / "pooled.json").write_text(json.dumps({"devices": 120, "sentences": 4567,
                                                  "pooled_at": "2026-12-07T12:00:00+00:00",
                                                  "references": ["unigram", "ngram", "centralized_lstm"]}))
    (refs / "evals" / "0002.json").write_text(json.dumps({"model_version": "0002", "baselines": {
        "unigram": {"recall_at_1": 0.05, "recall_at_3": 0.1, "recall_at_5": 0.12},
        "centralized_lstm": {"recall_at_1": 0.143, "recall_at_3": 0.2, "recall_at_5": 0.3, "train_tokens": 150000}}}))
    data = load_report_data(home / "server", references_dir=refs)
    old, new = data.evals
    assert old.baselines == {} and new.baselines["centralized_lstm"].train_tokens == 150000
    out = terminal_text(data)
    assert "LSTM, central (pooled reference)" in out and "unigram (pooled reference)" in out
    assert "raw text: POOLED for the references" in out and "120 devices (4567 sentences)" in out
    assert str(refs) in out and "raw text and token ids: never" not in out
    html = write_html(data, tmp_path / "r.html").read_text()
    assert "<td>LSTM, central (pooled reference)</td><td>14.3%</td>" in html and "POOLED" in html
    (refs / "evals" / "0002.json").write_text("{broken")
    with pytest.raises(ReportError, match=re.escape(str(refs / "evals" / "0002.json"))):
        load_report_data(home / "server", references_dir=refs)


def test_terminal_shows_the_privacy_ledger_total_and_each_part(tmp_path):
    from federated import ledger

    server = tmp_path / "server"
    shutil.copytree(FIXTURE, server)
    ledger.append(server, {"kind": "vocabulary", "method": "heavy_hitters", "epsilon": 1.5, "delta": 1e-6})
    for n in (1, 2, 2):  # round 2 re-run after a crash
        ledger.append(server, {"kind": "round", "run_id": "r", "round": n, "q": 0.05, "noise": 1.0,
                               "sampling": "poisson-secret", "population": 146, "metrics_released": False})
    ledger.append(server, {"kind": "evaluation", "version": "0002", "devices": 30, "live": False})
    path = server / "evals" / "0002.json"
    raw = json.loads(path.read_text())
    raw["privacy"] = {"epsilon": 0.9, "delta": 1e-5, "accountant": "RDP", "noise_multiplier": 1.0, "rounds": 3,
                      "adjacency": "add or remove one device", "sampling": "Poisson sampling, secret key",
                      "epsilon_without_amplification": 7.0}
    path.write_text(json.dumps(raw))
    text = " ".join(terminal_text(load_report_data(server)).split())
    total = ledger.total(server)
    assert f"privacy ledger: total ε = {total['epsilon']:.3g}" in text
    assert "vocabulary: ε = 1.5" in text and "training: ε = " in text
    assert "3 round releases (1 re-run after a crash, each counted)" in text
    assert "outside ε, per-round metrics: 0 released, 3 withheld" in text and "outside ε, evaluation sums" in text
    assert "adjacency: add or remove one device; sampling: Poisson sampling, secret key" in text
    assert "without amplification by sampling ε = 7" in text
