"""The pooled-text references: opt-in, kept outside server/, named by the disclosure, deleted with a device's data."""

from __future__ import annotations

import json

import pytest

from eval import disclosure
from eval.report_load import load_report_data
from keyboard.store import Device, devices_of_users
from tests.cli_runner import fedkb
from tests.federated.test_evaluation import _random_version

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runtime():
    from federated.runtime import LocalRuntime

    with LocalRuntime() as rt:
        yield rt


def test_references_are_opt_in_outside_server_disclosed_and_deleted_with_a_device(runtime, seeded_home):
    from federated.rollout import run_eval

    home = seeded_home
    version = _random_version(home)
    home.metrics_csv.write_text("round,num_tokens\n1,3000\n")  # the centralized LSTM's token budget

    plain = run_eval(home, version=version.name, devices=20)[0]
    assert plain.references is None and "baselines" not in plain.result
    assert not home.references.exists()
    assert disclosure.raw_text_line(home.references).startswith("raw text and token ids: never")

    outcome = run_eval(home, version=version.name, devices=20, references=True)[0]
    assert set(outcome.references["baselines"]) == {"unigram", "ngram", "centralized_lstm"}
    assert outcome.references["baselines"]["centralized_lstm"]["train_tokens"] == 3000
    assert outcome.references["pooled"]["devices"] == 60 and outcome.references["devices"] == 20
    assert outcome.references_path == home.references / "evals" / f"{version.name}.json"
    assert json.loads(outcome.references_path.read_text())["baselines"] == outcome.references["baselines"]
    assert list((home.references / "centralized_lstm").rglob("weights.npz"))
    server_eval = json.loads((home.server / "evals" / f"{version.name}.json").read_text())
    assert "baselines" not in server_eval and server_eval["devices"] == 20
    assert not [p for p in home.server.rglob("*") if "baselines" in p.parts or "centralized" in p.name]
    for device_id in devices_of_users(home.devices).values():  # nothing of the references in a device's record
        for record in (home.device(device_id) / "eval").glob("*.json"):
            assert "baseline" not in record.read_text()

    data = load_report_data(home.server, references_dir=home.references)
    assert set(data.latest.baselines) == {"unigram", "ngram", "centralized_lstm"}
    line = next(s for s in disclosure.statement(home.server, None, home.references) if s.startswith("raw text"))
    assert "POOLED" in line and "60 devices" in line and str(home.references) in line

    out = fedkb(home.root, "device", "delete", "--user", "user007", "--yes")
    assert out.returncode == 0, out.stderr
    assert "references fitted on pooled text" in out.stdout and not home.references.exists()
    with Device(home.device(devices_of_users(home.devices)["user007"])) as device:
        assert device.count() == 0
    assert disclosure.raw_text_line(home.references).startswith("raw text and token ids: never")
    assert load_report_data(home.server, references_dir=home.references).latest.baselines == {}
