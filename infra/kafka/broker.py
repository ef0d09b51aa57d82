"""A real single-node Apache Kafka broker (KRaft, combined broker+controller) on loopback.

The release is fetched from Maven Central with Maven (``pom.xml`` beside this file pins it) and run
with plain ``java``: no Docker, no Apache download site. Used by ``backbone kafka up``, ``backbone up``
and the pytest plugin.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from infra.errors import BrokerError, PrerequisiteError
from streams.cluster import min_insync_for, replication_for
from streams.settings import KafkaSettings

_HERE = Path(__file__).resolve().parent
POM = _HERE / "pom.xml"
LOG4J_CONFIG = _HERE / "log4j2.properties"
MIN_JAVA = 17


def kafka_version() -> str:
    """The pinned Kafka release: the ``kafka.version`` property of ``pom.xml`` (the one source)."""
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    if match is None:  # pragma: no cover - the pom ships with the package
        raise BrokerError(f"{POM} has no <kafka.version> property")
    return match.group(1)


def default_cache_dir() -> Path:
    """Where fetched jars live: ``$BACKBONE_CACHE_DIR`` or ``~/.cache/backbone``."""
    env = os.environ.get("BACKBONE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "backbone"


def find_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise PrerequisiteError(
            "Java was not found on PATH. The local Kafka broker runs on Java "
            f"{MIN_JAVA} or newer. Install it (Debian/Ubuntu: `apt-get install openjdk-17-jre-headless`) "
            "or point BACKBONE_KAFKA_BOOTSTRAP at an existing cluster."
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    match = re.search(r'version "(\d+)', out)
    if match is None or int(match.group(1)) < MIN_JAVA:
        raise PrerequisiteError(
            f"{java} reports {out.splitlines()[0] if out else 'no version'}; Kafka {kafka_version()} "
            f"needs Java {MIN_JAVA} or newer. Install a newer JDK and put it first on PATH."
        )
    return java


def ensure_distribution(cache_dir: Path | None = None) -> Path:
    """Return the folder of broker jars, fetching them with Maven on first use."""
    libs = (cache_dir or default_cache_dir()) / f"kafka-{kafka_version()}" / "libs"
    if (libs / ".complete").exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise PrerequisiteError(
            "Maven (`mvn`) was not found on PATH. Backbone fetches the Kafka broker from Maven "
            "Central with it. Install it (Debian/Ubuntu: `apt-get install maven`) and run again."
        )
    libs.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="libs-", dir=libs.parent))
    cmd = [
        mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}", "-DincludeScope=runtime",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise BrokerError(
            f"Maven could not fetch Kafka {kafka_version()} (exit {done.returncode}). Check that Maven "
            f"Central is reachable and ~/.m2 is writable.\n{(done.stdout + done.stderr)[-2000:]}"
        )
    (staging / ".complete").touch()
    if libs.exists():  # another process won the race; keep theirs
        shutil.rmtree(staging, ignore_errors=True)
    else:
        staging.rename(libs)
    return libs


#: ports :func:`free_port` handed out in this process
_GIVEN: set[int] = set()


def free_port() -> int:
    """A loopback port free now, and never one this process was given before: the kernel may
    hand the same port to two binds in a row once the first socket is closed, and callers pick
    several ports (broker, registry, gateway) before anything binds them."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _accepts_connections(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def _metadata_ok(cluster: str | KafkaSettings, timeout: float) -> bool:
    from streams.admin import admin_client

    kafka = cluster if isinstance(cluster, KafkaSettings) else KafkaSettings(bootstrap=cluster)
    # the admin client asks a node that accepts a connection: one node of a cluster down (and
    # still in the metadata) is not the cluster unreachable. Its own request timeout is longer
    # than ours: on expiry aiokafka logs an ERROR line (on the CLI's stderr), a cancel does not.
    probe = kafka.model_copy(update={"request_timeout_ms": max(1_000, int(2 * timeout * 1000))})
    try:
        async with contextlib.AsyncExitStack() as stack:
            async with asyncio.timeout(timeout):
                admin = await stack.enter_async_context(admin_client(probe))
            async with asyncio.timeout(timeout):
                await admin.describe_cluster()
        return True
    except Exception:  # readiness probe: any failure means "not ready yet"
        return False


def metadata_ok(cluster: str | KafkaSettings, timeout: float = 3.0) -> bool:
    """True when the cluster (a bootstrap string, or settings with TLS/SASL) answers a metadata
    request within ``timeout``."""
    return asyncio.run(_metadata_ok(cluster, timeout))


def _die_with_parent(sig: int = signal.SIGTERM) -> None:  # pragma: no cover - in the child
    # PR_SET_PDEATHSIG = 1: the kernel sends ``sig`` to the broker when its parent dies, so a
    # killed pytest or `backbone up` never leaves a broker behind.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, sig)


@dataclass(frozen=True)
class BrokerOptions:
    port: int = 0  # 0 = pick a free port
    heap: str = "512m"
    data_dir: Path | None = None  # None = a fresh temporary folder, removed on stop
    die_with_parent: bool = True
    controller_port: int = 0  # 0 = pick a free port
    #: Users of an extra SASL_PLAINTEXT listener (mechanisms PLAIN and SCRAM-SHA-256), for testing
    #: the clients' SASL settings; empty = no such listener.
    sasl_users: tuple[tuple[str, str], ...] = ()
    sasl_port: int = 0  # 0 = pick a free port (only with ``sasl_users``)
    #: Sent when the parent dies. A cluster node whose quorum is gone waits in its controlled
    #: shutdown for a controller that never comes: throw-away test nodes get SIGKILL instead.
    parent_death_signal: signal.Signals = signal.SIGTERM
    #: JIT with C1 only (``-XX:TieredStopAtLevel=1``): the broker is ready in about half the
    #: time and CPU (measured 9 s / 6.5 s CPU against 18-22 s / 10.7 s on the 2-core box) but
    #: runs hot code slower. For throw-away brokers that are started, killed and restarted (the
    #: test kit's fault scenarios and clusters), not for one that carries load.
    quick_start: bool = False


@dataclass(frozen=True)
class Quorum:
    """A node's place in a multi-node KRaft cluster: every node is broker and controller."""

    node_id: int
    voters: str  # ``controller.quorum.voters``: ``1@127.0.0.1:p1,2@127.0.0.1:p2,...``
    cluster_id: str  # shared by every node, or their storage is "formatted for another cluster"
    size: int

    @property
    def replication(self) -> int:
        return replication_for(self.size)

    @property
    def min_insync(self) -> int:
        return min_insync_for(self.replication)


class LocalBroker:
    """One broker process. ``start()`` returns once a metadata request succeeds."""

    def __init__(
        self,
        options: BrokerOptions | None = None,
        cache_dir: Path | None = None,
        quorum: Quorum | None = None,
    ) -> None:
        self.options = options or BrokerOptions()
        self._cache_dir = cache_dir
        self.quorum = quorum
        self.node_id = quorum.node_id if quorum else 1
        self.port = self.options.port or free_port()
        self.controller_port = self.options.controller_port or free_port()
        self.sasl_port = (self.options.sasl_port or free_port()) if self.options.sasl_users else 0
        self._own_dir = self.options.data_dir is None
        self.root = self.options.data_dir or Path(tempfile.mkdtemp(prefix="backbone-kafka-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap(self) -> str:
        """The SASL_PLAINTEXT listener (only with ``BrokerOptions.sasl_users``)."""
        if not self.sasl_port:
            raise BrokerError(
                "this broker was started without SASL users, so it has no SASL listener"
            )
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def log_file(self) -> Path:
        return self.root / "logs" / "server.log"

    def _listeners(self) -> list[str]:
        listeners = [f"PLAINTEXT://127.0.0.1:{self.port}"]
        if self.sasl_port:
            listeners.append(f"SASL://127.0.0.1:{self.sasl_port}")
        return listeners

    def _sasl_config(self) -> list[str]:
        if not self.options.sasl_users:
            return []
        users = " ".join(f'user_{name}="{secret}"' for name, secret in self.options.sasl_users)
        return [
            "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256",
            "listener.name.sasl.plain.sasl.jaas.config="
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};",
            "listener.name.sasl.scram-sha-256.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        ]

    def _write_config(self) -> Path:
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        props = self.root / "server.properties"
        voters = self.quorum.voters if self.quorum else f"1@127.0.0.1:{self.controller_port}"
        replication = self.quorum.replication if self.quorum else 1
        min_isr = self.quorum.min_insync if self.quorum else 1
        advertised = self._listeners()
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    f"node.id={self.node_id}",
                    f"controller.quorum.voters={voters}",
                    f"listeners={','.join(advertised)},CONTROLLER://127.0.0.1:{self.controller_port}",
                    f"advertised.listeners={','.join(advertised)}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map="
                    "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL:SASL_PLAINTEXT",
                    f"log.dirs={self.root / 'data'}",
                    "num.partitions=1",
                    "auto.create.topics.enable=false",
                    f"default.replication.factor={replication}",
                    f"min.insync.replicas={min_isr}",
                    f"offsets.topic.replication.factor={replication}",
                    "offsets.topic.num.partitions=1",
                    f"transaction.state.log.replication.factor={replication}",
                    f"transaction.state.log.min.isr={min_isr}",
                    "transaction.state.log.num.partitions=1",
                    f"share.coordinator.state.topic.replication.factor={replication}",
                    f"share.coordinator.state.topic.min.isr={min_isr}",
                    "group.initial.rebalance.delay.ms=0",
                    *self._sasl_config(),
                    "",
                ]
            )
        )
        return props

    def _java_cmd(
        self, java: str, libs: Path, main: str, *args: str, quick: bool = False
    ) -> list[str]:
        jit = ["-XX:TieredStopAtLevel=1"] if quick or self.options.quick_start else []
        return [
            java, *jit, f"-Xmx{self.options.heap}", f"-Xms{self.options.heap}", "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}", f"-Dkafka.logs.dir={self.root / 'logs'}",
            "-cp", f"{libs}/*", main, *args,
        ]  # fmt: skip

    def start(self, timeout: float = 90.0) -> float:
        """Format storage, launch the broker and wait until it answers metadata requests."""
        began = time.monotonic()
        self.launch()
        return self.wait_ready(timeout, began)

    def launch(self) -> None:
        """Format storage (first start only) and start the process; returns at once. A node of a
        multi-node quorum cannot answer until a majority of voters runs, so a cluster launches
        every node before it waits for any."""
        java = find_java()
        libs = ensure_distribution(self._cache_dir)
        for port in (self.port, self.controller_port, self.sasl_port):
            if port and port_in_use(port):
                raise BrokerError(
                    f"port {port} on 127.0.0.1 is already in use, so the local Kafka broker "
                    "cannot listen there: stop whatever holds it (`backbone kafka down` if it is "
                    f"our broker, or see `ss -ltnp | grep {port}`), or choose another port with "
                    "BACKBONE_KAFKA_PORT"
                )
        props = self._write_config()
        if not (self.root / "data" / "meta.properties").exists():  # a kept data dir is reused as is
            cluster_id = self.quorum.cluster_id if self.quorum else _cluster_id()
            scram = [
                arg
                for name, secret in self.options.sasl_users
                for arg in ("--add-scram", f"SCRAM-SHA-256=[name={name},password={secret}]")
            ]
            fmt = subprocess.run(
                self._java_cmd(
                    java, libs, "kafka.tools.StorageTool", "format",
                    f"--cluster-id={cluster_id}", "-c", str(props), *scram,
                    quick=True,  # a one-shot tool: C2 would only compile, never pay off
                ),
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if fmt.returncode != 0:
                raise BrokerError(
                    f"Formatting Kafka storage in {self.root} failed:\n{fmt.stderr[-2000:]}"
                )
        with open(self.root / "logs" / "stderr.log", "ab") as stderr:
            self.process = subprocess.Popen(
                self._java_cmd(java, libs, "kafka.Kafka", str(props)),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
                preexec_fn=(
                    functools.partial(_die_with_parent, self.options.parent_death_signal)
                    if self.options.die_with_parent
                    else None
                ),
            )

    def wait_ready(self, timeout: float = 90.0, began: float | None = None) -> float:
        """Wait until the launched broker answers a metadata request; returns the seconds since
        ``began`` (default: now). On failure the broker is stopped and :class:`BrokerError` says
        why, with the end of its log."""
        assert self.process is not None, "launch() first"
        began = time.monotonic() if began is None else began
        deadline = began + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self._log_tail()
                self.stop()
                raise BrokerError(
                    f"The Kafka broker exited with code {self.process.returncode} while starting. "
                    f"Last lines of its log ({self.log_file}):\n{tail}"
                )
            if _accepts_connections(self.port) and metadata_ok(self.bootstrap, timeout=2.0):
                self.startup_seconds = time.monotonic() - began
                return self.startup_seconds
            time.sleep(0.2)
        tail = self._log_tail()
        self.stop()
        raise BrokerError(
            f"The Kafka broker did not answer a metadata request within {timeout:.0f} s. "
            f"Last lines of its log ({self.log_file}):\n{tail}"
        )

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _log_tail(self, lines: int = 25) -> str:
        """The first errors of the log (why it failed; the shutdown that follows hides them),
        then its last lines."""
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        stderr = self.root / "logs" / "stderr.log"
        errors = [line for line in text.splitlines() if "] ERROR " in line or "] FATAL " in line][
            :5
        ]
        if stderr.exists():
            errors += stderr.read_text(errors="replace").splitlines()[-10:]
        return "\n".join([*errors, *text.splitlines()[-lines:]])

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, wait, then SIGKILL; remove the data folder if we created it."""
        self.kill(signal.SIGTERM, timeout)
        if self._own_dir:
            shutil.rmtree(self.root, ignore_errors=True)

    def send_signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the broker's process group without waiting."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def kill(self, sig: signal.Signals = signal.SIGKILL, timeout: float = 60.0) -> None:
        """Send ``sig`` (fault injection: SIGKILL at once, or SIGTERM) and wait until the broker
        has exited, SIGKILLing it after ``timeout``; the data folder is kept for a restart."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _cluster_id() -> str:
    # KRaft cluster ids are 16 random bytes, URL-safe base64 without padding (StorageTool random-uuid).
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
