"""The coordinator's gRPC service: the six calls wired to a ``Coordinator``, and how long a call may be held.

The messages are raw bytes (``common/messages.py``), so there is no code generation step.
"""

from __future__ import annotations

from concurrent import futures
from typing import TYPE_CHECKING

import grpc

from common import messages
from common.errors import ConfigError
from federated.tls import ServerTLS

if TYPE_CHECKING:
    from federated.coordinator import Coordinator


def messages_hold_seconds(context) -> float:
    """How long a check-in may be held: the caller's deadline less a margin, at most a minute."""
    remaining = context.time_remaining() if context is not None and context.time_remaining() is not None else 60.0
    return max(0.0, min(60.0, remaining - 2.0))


def serve(coordinator: Coordinator, listen: str = "127.0.0.1:0", *, max_workers: int = 256,
          tls: ServerTLS | None = None) -> tuple[grpc.Server, int]:
    """Starts the gRPC service on ``listen``; returns it and its port.

    Each held check-in occupies one of the ``max_workers`` threads (gRPC's synchronous server)
    while it waits for a round's selection, so the pool is sized for a few hundred devices.

    Without ``tls`` only loopback is served. With it the service is mutual TLS: a device must
    present a client certificate from the coordinator's CA, and ``device_id`` in its messages
    must be that certificate's common name.
    """
    if tls is None and not messages.is_loopback(listen):
        raise ConfigError(f"--listen {listen}: only a loopback address is served without TLS; make a CA with "
                         "`fedkb serve --init-tls` (or pass --tls-cert/--tls-key/--tls-ca)")
    opts = [("grpc.max_send_message_length", messages.MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", messages.MAX_MESSAGE_BYTES)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers), options=opts)
    handlers = {
        "CheckIn": grpc.unary_unary_rpc_method_handler(coordinator.check_in),
        "Upload": grpc.unary_unary_rpc_method_handler(coordinator.upload),
        "Tokenizer": grpc.unary_unary_rpc_method_handler(coordinator.tokenizer),
        "SecureAggregation": grpc.unary_unary_rpc_method_handler(coordinator.secure_aggregation),
        "Version": grpc.unary_unary_rpc_method_handler(coordinator.version),
        "EvalReport": grpc.unary_unary_rpc_method_handler(coordinator.eval_report),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(messages.SERVICE, handlers)])
    if tls is not None:
        coordinator.authenticate = True
        creds = grpc.ssl_server_credentials([(tls.key, tls.cert)], root_certificates=tls.ca, require_client_auth=True)
        port = server.add_secure_port(listen, creds)
    else:
        port = server.add_insecure_port(listen)
    if port == 0:
        raise ConfigError(f"--listen {listen}: cannot listen there "
                          "(the port is taken or the address is not this host's)")
    server.start()
    return server, port
