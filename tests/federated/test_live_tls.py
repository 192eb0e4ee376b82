"""Live rounds over mutual TLS: the CA `fedkb serve --init-tls` makes, device credentials, identity checks."""

from __future__ import annotations

import subprocess
import sys

import grpc
import numpy as np
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_a_round_over_mutual_tls_and_a_device_cannot_speak_for_another(seeded_home):
    from common import messages
    from federated import tls, training
    from federated.configs import LiveConfig
    from federated.coordinator import Coordinator
    from federated.program import Session
    from federated.runtime import LocalRuntime
    from federated.service import serve
    from keyboard.agent import connect
    from keyboard.store import list_device_dirs

    tls.init_ca(seeded_home.tls)
    dirs = list(list_device_dirs(seeded_home.devices))
    for d in dirs[:3]:
        tls.issue_device(seeded_home.tls, d)
    with pytest.raises(tls.TLSError, match="would orphan every device credential"):
        tls.init_ca(seeded_home.tls)
    train = training.TrainConfig(preset="tiny", clients_per_round=2, batch_size=4, seed=2, min_examples=3)
    with LocalRuntime():
        session = Session(seeded_home, train, publish_every=5, pretrained=False, live=True)
        coordinator = Coordinator(session, LiveConfig(overselect=1.0, selection_window=0.0, report_deadline=240))
        with pytest.raises(ValueError, match="only a loopback address is served without TLS"):
            serve(coordinator, "0.0.0.0:0")
        server, port = serve(coordinator, "127.0.0.1:0", tls=tls.ServerTLS.from_dir(seeded_home.tls))
        target = f"127.0.0.1:{port}"
        try:
            header = {"device_id": dirs[1].name, "eligible": {"idle": True, "charging": True, "unmetered": True},
                      "train_sentences": 10, "tokenizer_sha256": None}
            # dirs[0]'s credential, speaking as dirs[1]: refused, naming both
            spoof = connect(target, dirs[0] / "tls").unary_unary(f"/{messages.SERVICE}/CheckIn")
            reply, _ = messages.unpack(spoof(messages.pack(header), timeout=30))
            assert "credential is for" in reply["reason"] and dirs[1].name in reply["reason"]
            # no credential at all: the TLS handshake fails
            plain = grpc.insecure_channel(target).unary_unary(f"/{messages.SERVICE}/CheckIn")
            with pytest.raises(grpc.RpcError):
                plain(messages.pack(header), timeout=10)
            agents = subprocess.Popen(
                [sys.executable, "-m", "fedkb.cli", "--home", str(seeded_home.root), "device", "run", "--tls",
                 "--device", dirs[0].name, "--device", dirs[1].name, "--server", target, "--rounds", "1"],
                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            before = session.global_weights()
            result = coordinator.run_round(total_rounds=1)
            _out, err = agents.communicate(timeout=120)
            after = session.global_weights()  # while the runtime is up: TFF hangs on a stopped worker
        finally:
            server.stop(grace=1)
    assert agents.returncode == 0, err[-3000:]
    assert sorted(result.clients) == sorted([dirs[0].name, dirs[1].name])
    assert any(not np.array_equal(before[k], after[k]) for k in before)
    assert [d for d, _ in coordinator.refusals] == [dirs[1].name]
