"""The report's disclosure says which rounds' secure aggregation ran between real parties."""

import json

from eval.disclosure import updates_line


def _server(tmp_path, secure_agg: bool, rows: list[dict]):
    server = tmp_path / "server"
    (server / "state").mkdir(parents=True)
    (server / "state" / "run.json").write_text(json.dumps({"privacy": {"secure_agg": secure_agg}}))
    keys = sorted({k for r in rows for k in r})
    lines = [",".join(keys)] + [",".join(str(r.get(k, "")) for k in keys) for r in rows]
    (server / "metrics.csv").write_text("\n".join(lines) + "\n")
    return server


def test_live_and_simulated_secure_rounds_are_told_apart(tmp_path):
    rows = [{"round": 1, "loss": 3.0}, {"round": 2, "loss": 2.9, "live": 1.0}, {"round": 3, "loss": 2.8, "live": 1.0}]
    line = updates_line(_server(tmp_path, True, rows), None)
    assert "2 live round(s) masked by secure aggregation between the device agents" in line
    assert "1 simulated round(s) masked by simulated secure aggregation" in line


def test_only_live_rounds_claim_no_simulation_and_no_secure_agg_says_unmasked(tmp_path):
    live = updates_line(_server(tmp_path / "a", True, [{"round": 1, "live": 1.0}]), None)
    assert "between the device agents" in live and "simulated" not in live
    assert "unmasked (the server saw each update)" in updates_line(_server(tmp_path / "b", False, [{"round": 1}]), None)


def test_raw_text_is_never_pooled_unless_a_references_folder_holds_something(tmp_path):
    from eval.disclosure import raw_text_line

    refs = tmp_path / "references"
    assert raw_text_line(None).startswith("raw text and token ids: never")
    assert raw_text_line(refs).startswith("raw text and token ids: never")  # absent
    refs.mkdir()
    assert raw_text_line(refs).startswith("raw text and token ids: never")  # empty
    (refs / "centralized_lstm").mkdir()  # something fitted, even with no record of the pooling: say so
    assert raw_text_line(refs).startswith("raw text: POOLED") and str(refs) in raw_text_line(refs)
    (refs / "pooled.json").write_text(json.dumps({"devices": 7, "sentences": 99,
                                                  "pooled_at": "2026-12-07T12:00:00+00:00",
                                                  "references": ["unigram"]}))
    line = raw_text_line(refs)
    assert "7 devices (99 sentences)" in line and "at 2026-12-07T12:00:00+00:00" in line
    assert "fit the unigram references" in line
