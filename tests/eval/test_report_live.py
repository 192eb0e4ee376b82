"""``fedkb report`` shows the live metrics per version beside offline recall, withheld ones as withheld."""

from __future__ import annotations

import base64
import json
import shutil

import pytest

from eval.report import render_html
from eval.report_load import ReportError, load_report_data
from federated import live_release
from tests.eval.test_report import FIXTURE, IMG_RE, PNG_SIGNATURE, terminal_text

# By hand: 400 words, 80 on the first chip, 180 on the chips, 40 / 120 at the word's start, 100 accepted,
# 10 of them modified, 1600 letters of which 300 saved.
TYPED = {"words": 400, "shown_at_1": 80, "shown_at_3": 180, "start_at_1": 40, "start_at_3": 120, "accepted": 100,
         "modified": 10, "letters": 1600, "letters_saved": 300}
REPLAYED = {**TYPED, "shown_at_3": 120, "letters_saved": 400}


@pytest.fixture
def server(tmp_path):
    server = tmp_path / "server"
    shutil.copytree(FIXTURE, server)
    released = live_release.release({("0002", "typed"): (25, TYPED), ("0002", "replayed"): (20, REPLAYED),
                                     ("0001", "typed"): (3, TYPED)}, 20, origin="test")
    live_release.record(server, released, 20)
    return server


def test_terminal_has_a_live_row_per_version_and_source_beside_offline_recall(server):
    text = terminal_text(load_report_data(server))
    assert "live metrics" in text
    row = next(line for line in text.splitlines() if "0002" in line and "typed" in line)
    # devices, words, offline recall@3 (0.21 in the fixture), impression @1/@3, start @1/@3, acceptance,
    # savings, modified after acceptance.
    cells = [c.strip() for c in row.split("│")[1:-1]]
    assert cells == ["0002", "typed", "25", "400", "21.0%", "20.0%", "45.0%", "10.0%", "30.0%", "25.0%", "18.8%",
                     "10.0%"]
    replayed = next(line for line in text.splitlines() if "0002" in line and "replayed" in line)
    assert "30.0%" in replayed and "25.0%" in replayed and "simulated" in text  # 120/400 recall@3, 400/1600 savings
    assert "version 0001, typed by people: withheld: 3 devices < minimum 20" in text
    assert "live metrics: sums of each device's typing counts" in text and "from ≥ 20 devices" in text


def test_html_has_the_live_table_and_its_plot(server):
    page = render_html(load_report_data(server))
    assert '<section id="live">' in page and "withheld: 3 devices &lt; minimum 20" in page
    assert 'alt="live impression recall@3 and keystroke savings per version"' in page
    images = IMG_RE.findall(page)
    assert len(images) == 5 and all(base64.b64decode(b).startswith(PNG_SIGNATURE) for b in images)


def test_without_live_metrics_the_report_has_no_live_part(tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "server")
    data = load_report_data(tmp_path / "server")
    assert data.live == {} and "live metrics" not in terminal_text(data)
    assert '<section id="live">' not in render_html(data)


def test_a_damaged_live_metrics_file_is_a_report_error_naming_it(server):
    path = server / live_release.LIVE_FILE
    data = json.loads(path.read_text())
    data["versions"]["0002"]["typed"]["counts"]["letters_saved"] = 99999
    path.write_text(json.dumps(data))
    with pytest.raises(ReportError, match="live_metrics.json.*letters_saved \\(99999\\) exceeds letters"):
        load_report_data(server)
