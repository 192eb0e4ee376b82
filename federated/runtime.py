"""TFF's C++ runtime, started so that its ``worker_binary`` never outlives us.

TFF's default context starts ``worker_binary`` lazily and stops it from ``__del__``, which does
not run at interpreter exit, and a parent killed with SIGKILL runs no Python at all. So we
start the worker ourselves: on Linux the child asks the kernel for SIGKILL when its parent
dies (``PR_SET_PDEATHSIG``), its SIGINT handler is reset to the default (a worker that
inherits an ignored SIGINT makes TFF hang when it stops it), and ``stop()`` ends it on every
normal path. The context talks to it over gRPC exactly as TFF's own local context does, but
through a Unix socket: the worker itself runs in a network namespace of its own, unreachable
from the network (``federated/isolation.py``).
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

from common import die_with_parent
from common.errors import FedkbError
from federated import isolation

_GRPC_OPTIONS = [
    ("grpc.max_message_length", 2_000_000_000),
    ("grpc.max_receive_message_length", 2_000_000_000),
    ("grpc.max_send_message_length", 2_000_000_000),
]


class RuntimeStartError(FedkbError, RuntimeError):
    """The TFF worker could not be started."""


def worker_binary_path() -> Path:
    spec = importlib.util.find_spec("tensorflow_federated")  # found without importing it (~15 s)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeStartError("tensorflow_federated is not installed")
    return Path(spec.submodule_search_locations[0]) / "data" / "worker_binary"


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_own_namespaces(process: subprocess.Popen, timeout: float = 120.0) -> None:
    """Returns once ``process`` (``netns.py new``) has moved into its own user and network namespaces.

    The relay joins the namespaces of that pid: started before the move (a loaded machine can
    take seconds to start the interpreter that makes it), it would try to join our own user
    namespace, which the kernel refuses, and the worker would never be reached.
    """
    ours = [os.stat(f"/proc/self/ns/{kind}").st_ino for kind in ("user", "net")]
    deadline = time.monotonic() + timeout
    while True:
        try:
            theirs = [os.stat(f"/proc/{process.pid}/ns/{kind}").st_ino for kind in ("user", "net")]
        except FileNotFoundError:
            theirs = ours
        if all(a != b for a, b in zip(ours, theirs)):
            return
        if process.poll() is not None:
            raise RuntimeStartError(f"the TFF worker exited with status {process.returncode} before it entered its "
                                    "private network namespace")
        if time.monotonic() > deadline:
            raise RuntimeStartError(
                f"the TFF worker did not enter its private network namespace within {timeout:.0f} s")
        time.sleep(0.01)


class Worker:
    """One ``worker_binary`` process serving TFF's executor service, and the relay that reaches it.

    ``worker_binary`` runs in a network namespace of its own (``federated/isolation.py``). With
    ``listen=None`` only this user reaches it, through a Unix socket in an owner-only directory
    (``target`` is ``unix:PATH``); with ``listen="HOST:PORT"`` the relay serves exactly that
    address (``fedkb worker``). Where no namespace can be made, the worker serves on all
    interfaces as TFF's own does, after a warning; a ``listen`` host other than a wildcard is
    then refused rather than silently widened.
    """

    def __init__(self, *, listen: str | None = None, log_path: Path | None = None,
                 max_concurrent_computation_calls: int | None = None):
        if max_concurrent_computation_calls is None:
            # One client computation per core: unlimited, ten clients' graphs fight over two
            # cores and a round takes about 1.4x longer (bench/train_throughput.py).
            max_concurrent_computation_calls = available_cores()
        binary = worker_binary_path()
        if not binary.is_file():
            raise RuntimeStartError(f"TFF worker binary not found at {binary}")
        host, port = isolation.split_host_port(listen) if listen else ("127.0.0.1", None)
        reason = isolation.unavailable_reason()
        if reason is not None and listen and not isolation.is_wildcard(host):
            raise RuntimeStartError(f"cannot serve TFF's executor on {host} only: {reason}; worker_binary can only "
                                    f"bind all interfaces (pass 0.0.0.0:{port} to accept that knowingly)")
        self.relay: subprocess.Popen | None = None
        self._socket_dir: Path | None = None
        # The log outlives this call (the worker writes to it until close()), so no context manager.
        self._log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        listener = None
        try:
            if reason is None:
                listener = self._listen(host, port)
            else:
                port = port or _free_port()
                print(isolation.exposure_warning(port, reason), file=sys.stderr, flush=True)
            self.port = port  # the TCP port others reach (None: only the Unix socket)
            self._connect_host = "127.0.0.1" if isolation.is_wildcard(host) else host
            argv = [str(binary), f"--port={port if reason else isolation.INNER_PORT}",
                    f"--max_concurrent_computation_calls={max_concurrent_computation_calls}"]
            self.process = self._popen(die_with_parent.command(argv) if reason else isolation.in_private_network(argv))
            if listener is not None:
                _wait_for_own_namespaces(self.process)
                relay = [sys.executable, "-I", "-S", str(isolation.RELAY), str(listener.fileno()),
                         str(isolation.INNER_PORT)]
                self.relay = self._popen(isolation.in_namespaces_of(self.process.pid, relay),
                                         pass_fds=(listener.fileno(),))
        except BaseException as exc:
            self.stop()
            if isinstance(exc, (OSError, subprocess.SubprocessError)):
                raise RuntimeStartError(f"could not start TFF's worker: {exc}") from exc
            raise
        finally:
            if listener is not None:
                listener.close()
        atexit.register(self.stop)

    def _listen(self, host: str, port: int | None):
        if port is not None:
            return isolation.tcp_listener(host, port)
        self._socket_dir = Path(tempfile.mkdtemp(prefix="fedkb-tff-"))  # mode 0700
        try:
            return isolation.unix_listener(self._socket_dir)
        except OSError:  # a long TMPDIR
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = Path(tempfile.mkdtemp(prefix="fedkb-tff-", dir="/tmp"))
            return isolation.unix_listener(self._socket_dir)

    def _popen(self, argv: list[str], pass_fds=()) -> subprocess.Popen:
        # No preexec_fn: argv starts with a fresh interpreter (netns.py or die_with_parent.py) that
        # arms the parent-death signal and resets SIGINT/SIGTERM before it execs. Its own process
        # group: Ctrl-C in the terminal reaches us, and we stop the worker in order.
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                                process_group=0, pass_fds=pass_fds)

    @property
    def target(self) -> str:
        """Where a gRPC channel reaches the executor service: ``unix:PATH`` or ``HOST:PORT``."""
        if self.port is None:
            return f"unix:{self._socket_dir / 'executor.sock'}"
        host = f"[{self._connect_host}]" if ":" in self._connect_host else self._connect_host
        return f"{host}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        """Ends the worker (SIGINT, then SIGKILL if it does not exit in ``timeout`` seconds), then the relay."""
        for process, sig in ((getattr(self, "process", None), signal.SIGINT), (self.relay, signal.SIGTERM)):
            if process is not None and process.poll() is None:
                process.send_signal(sig)
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
        if self._log is not subprocess.DEVNULL and not self._log.closed:
            self._log.close()
        atexit.unregister(self.stop)


LOCAL_STARTUP_TIMEOUT = 300.0  # seconds a worker this process started may take to serve


def wait_until_serving(worker: Worker, timeout: float = 60.0) -> None:
    """Returns once the worker answers gRPC; raises ``RuntimeStartError`` if it exits or stays silent."""
    channel = grpc.insecure_channel(worker.target, _GRPC_OPTIONS)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if worker.process.poll() is not None:
                raise RuntimeStartError(f"worker_binary exited with status {worker.process.returncode} before serving "
                                        f"at {worker.target} (is the port in use?)")
            if worker.relay is not None and worker.relay.poll() is not None:
                raise RuntimeStartError(f"the relay to worker_binary exited with status {worker.relay.returncode} "
                                        f"before it served at {worker.target}")
            try:
                grpc.channel_ready_future(channel).result(timeout=0.5)
                return
            except grpc.FutureTimeoutError:
                if time.monotonic() > deadline:
                    raise RuntimeStartError(
                        f"worker_binary did not serve at {worker.target} within {timeout:.0f} s") from None
    finally:
        channel.close()


def connect_context(targets: list[str], *, startup_timeout: float = 60.0, subrounds: int | None = None):
    """A synchronous TFF context that runs on the executor services at ``targets``.

    One target gives an ordinary context; several (or ``subrounds``) give TFF's
    mergeable-computation context, which splits each computation's clients into ``subrounds``
    groups (default: one per target), runs them across the targets, and merges their aggregates.
    On one target, subrounds run one after the other: the worker then holds only one group's
    client values at a time.
    """
    import tensorflow_federated as tff

    contexts = [_async_context(target, startup_timeout) for target in targets]
    if len(contexts) == 1 and subrounds is None:
        return tff.framework.SyncExecutionContext(
            executor_fn=contexts[0], compiler_fn=tff.backends.native.desugar_and_transform_to_native,
            transform_args=tff.tensorflow.transform_args, transform_result=tff.tensorflow.transform_result,
        )
    asyncs = [
        tff.framework.AsyncExecutionContext(
            factory, compiler_fn=tff.backends.native.desugar_and_transform_to_native,
            transform_args=tff.tensorflow.transform_args, transform_result=tff.tensorflow.transform_result,
        )
        for factory in contexts
    ]
    return tff.backends.native.create_mergeable_comp_execution_context(asyncs, num_subrounds=subrounds)


def _async_context(target: str, startup_timeout: float):
    """An executor factory for one remote executor service (CLIENTS cardinality defaults to 0)."""
    import tensorflow_federated as tff

    channel = grpc.insecure_channel(target, _GRPC_OPTIONS)
    stub = tff.framework.RemoteExecutorGrpcStub(channel)
    deadline = time.monotonic() + startup_timeout
    while not stub.is_ready:
        if time.monotonic() > deadline:
            raise RuntimeStartError(f"no TFF executor service answered at {target} within {startup_timeout:.0f} s")
        time.sleep(0.1)

    def stack_fn(cardinalities):
        cardinalities.setdefault(tff.CLIENTS, 0)
        executor = tff.framework.RemoteExecutor(stub)
        executor.set_cardinalities(cardinalities)
        return executor

    return tff.framework.ResourceManagingExecutorFactory(stack_fn)


class LocalRuntime:
    """Context manager: start a local worker, make it TFF's default context, stop it on exit."""

    def __init__(self, log_path: Path | None = None):
        self._log_path = log_path
        self.worker: Worker | None = None

    def __enter__(self) -> LocalRuntime:
        import tensorflow_federated as tff

        # A worker inheriting SIG_IGN for SIGINT would hang TFF when stopped.
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        self.worker = Worker(log_path=self._log_path)
        try:
            # Our own worker: wait while it is alive and loading (a loaded machine has taken over a
            # minute to map its ~1 GB), stop at once if it exits.
            wait_until_serving(self.worker, timeout=LOCAL_STARTUP_TIMEOUT)
            tff.framework.set_default_context(connect_context([self.worker.target]))
        except BaseException:
            self.worker.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.worker is not None:
            import tensorflow_federated as tff

            # A computation invoked on the stopped worker would wait for it forever: fail instead.
            tff.framework.set_default_context(_stopped_context())
            self.worker.stop()


def _stopped_context():
    import tensorflow_federated as tff

    class StoppedContext(tff.framework.SyncContext):
        """TFF's default context once a ``LocalRuntime`` has ended: any computation raises."""

        def invoke(self, comp, arg):
            raise RuntimeStartError("a TFF computation was invoked after its LocalRuntime ended (its worker is "
                                    "stopped); run it inside `with LocalRuntime():`")

    return StoppedContext()
