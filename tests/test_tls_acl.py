"""Redis over TLS (``rediss://``) and as a least-privilege ACL user.

Each test starts its own redis-server with an ACL file: ``default`` off, and a ``zart``
user that is the one line of ``deploy/acl.conf`` (the rule deploy/README.md documents; the
test puts a password hash in place of its placeholder). The TLS test's server listens on
a TLS port only, with a throwaway CA and server certificate the ``openssl`` command makes
at test time. Worker subprocesses, a Client, the HTTP API (``zart-es api``) and the CLI
run a representative workload as that user, and Redis' ``ACL LOG`` must stay empty: a
refusal can go unnoticed otherwise (the API's ``/metrics`` reads with
``raise_on_error=False``; the worker's loops log and retry).

The module is also the workers' ``--app``: the workflows below register only in a worker
started with ``ZART_TEST_TLS_ACL_APP=1``, so importing the tests registers nothing.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ipaddress
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_sync
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from redis.exceptions import NoPermissionError

from zart_es import (
    Client,
    Context,
    ExecutionFailedError,
    Registry,
    Schedules,
    Status,
    Worker,
    durable,
    queue,
    schedule,
)
from zart_es.store._embedded import find_redis_server, free_port

from .apps.crash import effect
from .helpers import ROOT, spawn_worker, stop_worker, wait_for

pytestmark = pytest.mark.processes

ACL_CONF = ROOT / "deploy" / "acl.conf"
PLACEHOLDER = "#<sha256-hex-of-the-password>"
APPS = ["tests.apps.crash", "tests.apps.control", "tests.test_tls_acl"]
APP_ENV = "ZART_TEST_TLS_ACL_APP"


# -- the workers' app ------------------------------------------------------------------------

if os.environ.get(APP_ENV) == "1":
    queue("acl-tenants", concurrency=2, rate=200)
    schedule("acl-nightly", "acl-child", 1, cron="0 3 * * *")

    @durable("acl-child")
    async def acl_child(ctx: Context, n: int) -> int:
        return await ctx.step("double", lambda: n * 2)

    @durable("acl-parent", timeout="1m")
    async def acl_parent(ctx: Context, n: int) -> int:
        first = await ctx.step("first", lambda: n)
        doubled: int = await ctx.call("acl-child", first, type=int)
        await ctx.sleep(0.1)
        return doubled + 1

    @durable("acl-flaky")
    async def acl_flaky(ctx: Context, marker: str) -> str:
        def charge() -> str:
            if not Path(marker).exists():
                raise ConnectionError("payment provider down")
            return "charged"

        return await ctx.step("charge", charge)

    @durable("acl-slow")
    async def acl_slow(ctx: Context) -> str:
        async def work() -> str:
            first = _slow_pid(Path(os.environ["ZART_DEMO_EFFECTS"])) is None
            effect("slow-begin", os.getpid())
            await asyncio.sleep(30 if first else 0)  # the first run is drained mid-step
            return "slow done"

        return await ctx.step("work", work)

    @durable("acl-queued", queue="acl-tenants")
    async def acl_queued(ctx: Context, i: int) -> int:
        async def work() -> int:
            await asyncio.sleep(0.05)
            return i

        return await ctx.step("work", work)


# -- a private redis-server with TLS and/or an ACL file ----------------------------------------


@dataclass(frozen=True)
class Certs:
    """A throwaway CA and a server certificate it signed, for 127.0.0.1 and localhost."""

    ca: Path
    cert: Path
    key: Path


def make_certs(directory: Path) -> Certs:
    """CA and server certificate (EC P-256, one day), made with the cryptography package
    (a test dependency: no openssl command needed, so the test never skips for it)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "zart-es test CA")])
    now = datetime.datetime.now(datetime.UTC)
    ca_cert = (_certificate(ca_name, ca_name, ca_key.public_key(), now)
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(_usage(key_cert_sign=True), critical=True)
               .sign(ca_key, hashes.SHA256()))
    server_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    server_cert = (_certificate(server_name, ca_name, key.public_key(), now)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                  critical=True)
                   .add_extension(_usage(digital_signature=True), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                                  critical=False)
                   .add_extension(x509.SubjectAlternativeName(
                       [x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        x509.DNSName("localhost")]), critical=False)
                   .sign(ca_key, hashes.SHA256()))
    certs = Certs(ca=directory / "ca.pem", cert=directory / "server.pem",
                  key=directory / "server.key")
    certs.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    certs.cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    certs.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.TraditionalOpenSSL,
                                            serialization.NoEncryption()))
    return certs


def _certificate(subject: x509.Name, issuer: x509.Name, public_key: Any,
                 now: datetime.datetime) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1)))


def _usage(*, key_cert_sign: bool = False, digital_signature: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=digital_signature, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=key_cert_sign, crl_sign=key_cert_sign,
                         encipher_only=False, decipher_only=False)


def tls_supported(binary: str) -> bool:
    """Whether ``binary`` knows ``tls-port`` (a build without TLS rejects the directive;
    one with TLS exits because it was told to listen nowhere)."""
    probe = subprocess.run([binary, "--port", "0", "--tls-port", "0", "--save", ""],
                           capture_output=True, text=True, timeout=10, check=False)
    return "tls-port" not in probe.stdout + probe.stderr


class SecureRedis:
    """A redis-server on 127.0.0.1 with TLS (``certs``) and/or an ACL file, and an
    ``admin`` user (``+@all``) the test uses to look at what the workload did."""

    ADMIN = "admin"

    def __init__(self, data_dir: Path, *, certs: Certs | None = None,
                 users: list[str] | None = None, binary: str | None = None) -> None:
        self.data_dir = data_dir
        self.binary = binary or find_redis_server()
        self.certs = certs
        self.admin_password = secrets.token_hex(8)
        self.users = users
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, user: str | None = None, password: str | None = None) -> str:
        """``redis://`` or ``rediss://...?ssl_ca_certs=<ca.pem>``, as ``user`` if given."""
        scheme = "rediss" if self.certs else "redis"
        auth = f"{user}:{password}@" if user else ""
        query = f"?ssl_ca_certs={self.certs.ca}" if self.certs else ""
        return f"{scheme}://{auth}127.0.0.1:{self.port}/0{query}"

    def admin(self) -> redis_sync.Redis:
        """A synchronous client with every permission."""
        user = self.ADMIN if self.users is not None else None
        return redis_sync.Redis.from_url(self.url(user, self.admin_password),
                                         socket_connect_timeout=2, socket_timeout=10)

    def start(self) -> SecureRedis:
        """Start the server (another port if the one picked was taken meanwhile) and wait
        until the admin user gets an answer to PING."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        binary = self.binary
        if self.certs and not tls_supported(binary):
            pytest.skip(f"{binary} was built without TLS support (no tls-port directive)")
        for _ in range(5):
            self.port = free_port()
            args = [binary, "--bind", "127.0.0.1", "--dir", str(self.data_dir), "--save", "",
                    "--appendonly", "no", "--logfile", str(self.data_dir / "redis.log")]
            if self.certs:
                args += ["--port", "0", "--tls-port", str(self.port),
                         "--tls-cert-file", str(self.certs.cert),
                         "--tls-key-file", str(self.certs.key),
                         "--tls-ca-cert-file", str(self.certs.ca), "--tls-auth-clients", "no"]
            else:
                args += ["--port", str(self.port)]
            if self.users is not None:
                acl = self.data_dir / "users.acl"
                acl.write_text("\n".join([
                    "user default off",
                    f"user {self.ADMIN} on >{self.admin_password} ~* &* +@all",
                    *self.users]) + "\n")
                args += ["--aclfile", str(acl)]
            self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, start_new_session=True)
            if self._wait_ready():
                return self
        raise RuntimeError(f"redis-server did not start: {self._log_tail()}")

    def _wait_ready(self) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self._log_tail()
                if "already in use" in log:
                    return False
                raise RuntimeError(f"redis-server exited at start: {log}")
            try:
                with self.admin() as admin:
                    admin.ping()
                    # our server, not another process's that got the port first
                    if admin.info("server")["process_id"] == self.process.pid:
                        return True
                    self.stop()
                    return False
            except (redis_sync.ConnectionError, redis_sync.TimeoutError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer within 10 s: {self._log_tail()}")

    def _log_tail(self) -> str:
        log = self.data_dir / "redis.log"
        return log.read_text(errors="replace")[-600:].strip() if log.exists() else ""

    def stop(self) -> None:
        """Stop the server (SIGKILL after 10 s)."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def zart_rule() -> str:
    """The ``zart`` user's rule as deploy/acl.conf (and so deploy/README.md) has it."""
    (line,) = [ln for ln in ACL_CONF.read_text().splitlines() if ln.strip()]
    assert line.startswith("user zart reset on "), line
    assert PLACEHOLDER in line.split(), line
    return line


def user_line(name: str, password: str, *, without: str | None = None) -> str:
    """deploy/acl.conf's user as ``name`` with ``password`` (its SHA-256, as the file
    asks), optionally without one of its rules."""
    tokens = zart_rule().split()
    if without is not None:
        assert without in tokens, without
        tokens.remove(without)
    tokens[1] = name
    tokens[tokens.index(PLACEHOLDER)] = "#" + hashlib.sha256(password.encode()).hexdigest()
    return " ".join(tokens)


def acl_refusals(server: SecureRedis) -> list[dict[str, Any]]:
    """What the server's ACL LOG recorded (denied commands, keys, channels, auth)."""
    with server.admin() as admin:
        entries: list[dict[str, Any]] = admin.acl_log()
    return entries


async def zart_cli(url: str, *args: str) -> tuple[int, str, str]:
    """``zart-es ARGS --redis-url URL`` in a subprocess: (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "zart_es", *args, "--redis-url", url, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


# -- the workload: what workers, clients, the API and the CLI do --------------------------------


def _slow_pid(effects: Path) -> int | None:
    """The process id of the worker that began acl-slow's step first, if one did."""
    for line in effects.read_text().splitlines():
        if line.startswith("slow-begin "):
            return int(line.split()[1])
    return None


def _spawn_api(url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "zart_es", "api", "--redis-url", url, "--port", str(port)],
            cwd=ROOT, stdout=out, stderr=out, start_new_session=True)


def _spawn(url: str, log: Path, effects: Path) -> subprocess.Popen[bytes]:
    return spawn_worker(url, APPS[0], log=log,
                        env={APP_ENV: "1", "ZART_DEMO_EFFECTS": str(effects)},
                        extra=[arg for app in APPS[1:] for arg in ("--app", app)]
                        + ["--grace-period", "0.2"])


async def _status(client: Client, execution_id: str, wanted: Status) -> bool:
    return (await client.status(execution_id)).status == wanted


async def run_workload(server: SecureRedis, url: str, tmp_path: Path) -> None:
    """Everything zart-es does to Redis, through ``url``: two worker subprocesses (one
    drained mid-step), a Client, the HTTP API and the CLI."""
    effects = tmp_path / "effects.log"
    effects.touch()
    logs = [tmp_path / "worker-0.log", tmp_path / "worker-1.log", tmp_path / "api.log"]
    workers = [_spawn(url, log, effects) for log in logs[:2]]
    port = free_port()
    api = _spawn_api(url, port, logs[2])
    try:
        async with Client(url) as client:
            await _executions(client, server, tmp_path, effects, workers)
            await _operations(client)
            await _reads(client, url, f"http://127.0.0.1:{port}")
            await _archive(client, url, tmp_path)
    finally:
        for worker in workers:
            stop_worker(worker)
        stop_worker(api)
    for log in logs:
        text = log.read_text()
        assert "NOPERM" not in text, text[-2000:]
        assert "NoPermission" not in text, text[-2000:]


async def _executions(client: Client, server: SecureRedis, tmp_path: Path, effects: Path,
                      workers: list[subprocess.Popen[bytes]]) -> None:
    """Steps, a durable loop, a sleep, retries, a signal and a signal timeout, a child
    call with a deadline, a queue with a cap and a rate, a cancel; a script cache flushed
    under the workers; a worker drained mid-step; a garbage timer moved aside."""
    marker = tmp_path / "provider-up"
    ids = {
        "loop": await client.start("crash-loop", {"n": 3}),
        "sleep": await client.start("sleeper", {"seconds": 0.2}),
        "retry": await client.start("retrier", {"failures": 2, "delay": "50ms",
                                                 "backoff": "fixed"}),
        "parent": await client.start("acl-parent", 5),
        "signal": await client.start("wait-or-timeout", 30),
        "no-signal": await client.start("wait-or-timeout", 0.2),
        "flaky": await client.start("acl-flaky", str(marker)),
    }
    queued = [await client.start("acl-queued", i, queue_key="tenant-1") for i in range(5)]
    assert await client.send_signal(ids["signal"], "approve", "yes")
    handle = client.execution(ids["loop"])
    assert await handle.result(timeout=20) == 0 + 1 + 2
    assert await client.result(ids["sleep"], timeout=20) == "woke"
    assert await client.result(ids["retry"], timeout=20) == 3
    assert await client.result(ids["parent"], timeout=20) == 11
    assert await client.result(ids["signal"], timeout=20) == "approved: yes"
    assert await client.result(ids["no-signal"], timeout=20) == "timed out"
    assert [await client.result(i, timeout=20) for i in queued] == list(range(5))
    with pytest.raises(ExecutionFailedError, match="payment provider down"):
        await client.result(ids["flaky"], timeout=20)

    with server.admin() as admin:
        admin.script_flush()  # as a restarted Redis: EVALSHA meets NOSCRIPT
        admin.zadd("{zart:0}:timers", {"garbage": 0})  # a timer zart-es did not write

    cancelled = await client.start("wait-or-timeout", 60)
    await wait_for(lambda: _status(client, cancelled, Status.WAITING), timeout=20)
    assert await client.cancel(cancelled, reason="acl test")
    assert (await client.wait(cancelled, timeout=20)).status == Status.CANCELLED

    marker.touch()
    assert await client.retry_step(ids["flaky"], reason="provider is back") == "charge"
    assert await client.result(ids["flaky"], timeout=20) == "charged"
    assert await client.rerun(ids["flaky"], ["charge"])
    assert (await client.wait(ids["flaky"], timeout=20)).status == Status.COMPLETED
    assert await client.restart(ids["flaky"]) >= 1
    assert (await client.wait(ids["flaky"], timeout=20)).status == Status.COMPLETED

    slow = await client.start("acl-slow")
    pid = await wait_for(lambda: _async(_slow_pid(effects)), timeout=20)
    (busy,) = [w for w in workers if w.pid == pid]
    stop_worker(busy)  # drains: its run is cancelled and the message handed back
    assert await client.result(slow, timeout=20) == "slow done"

    with server.admin() as admin:
        await wait_for(lambda: _async(admin.zscore("{zart:0}:timers:bad", "garbage")
                                      is not None), timeout=20)


async def _async(value: Any) -> Any:
    return value


async def _operations(client: Client) -> None:
    """Pause rules, schedules (one declared in the app, one added here)."""
    assert await client.pause(workflow="sleeper", reason="acl test", by="tester")
    assert [rule.rule for rule in await client.pauses()] == ["workflow:sleeper"]
    held = await client.start("sleeper", {"seconds": 1})
    await wait_for(lambda: _status(client, held, Status.PAUSED), timeout=20)
    await client.resume(workflow="sleeper", by="tester")
    assert await client.result(held, timeout=20) == "woke"

    schedules = Schedules(client)
    await schedules.add("acl-every", "acl-child", 7, every="1s", by="tester")

    async def occurrence() -> bool:
        return any(e.execution_id.startswith("acl-every-")
                   for e in await client.list(name="acl-child"))

    await wait_for(occurrence, timeout=20)
    assert {s.name for s in await schedules.list()} == {"acl-every", "acl-nightly"}
    await schedules.pause("acl-every", by="tester")
    await schedules.resume("acl-every", by="tester")
    assert await schedules.state("acl-every") is not None
    assert len(await schedules.next_occurrences("acl-every", 2)) == 2
    assert await schedules.remove("acl-every", by="tester")


async def _archive(client: Client, url: str, tmp_path: Path) -> None:
    """The standalone archiver moves ended executions (retention 0) out of Redis, and
    the operator audit stream; the client reads an archived one back."""
    (some, *_) = await client.list(status="completed", limit=1)
    archive = tmp_path / "archive"
    log = tmp_path / "archiver.log"
    archiver = _spawn_archiver(url, archive, log)
    try:
        async def gone() -> bool:
            return not await client.deployment.store.meta(some.execution_id)

        await wait_for(gone, timeout=30, interval=0.1)
    finally:
        stop_worker(archiver)
    text = log.read_text()
    assert "NOPERM" not in text, text[-2000:]
    assert "NoPermission" not in text, text[-2000:]
    async with Client(url, archive_url=str(archive)) as reader:
        assert (await reader.status(some.execution_id)).status == Status.COMPLETED
        assert await reader.verify(some.execution_id) is None


def _spawn_archiver(url: str, archive: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "zart_es", "archiver", "--redis-url", url,
             "--archive-url", str(archive), "--retention", "0", "--batch-wait", "0",
             "--poll-interval", "0.1"], cwd=ROOT, stdout=out, stderr=out,
            start_new_session=True)


async def _reads(client: Client, url: str, api: str) -> None:
    """Listing, stats, history, the hash chain, the HTTP API and the CLI."""
    (some, *_) = await client.list(status="completed", limit=5)
    assert len(await client.list(limit=500)) >= 15
    assert (await client.stats()).total >= 15
    assert [e async for e in client.history(some.execution_id)]
    assert await client.verify(some.execution_id) is None
    assert (await client.describe(some.execution_id)).status == Status.COMPLETED

    async with httpx.AsyncClient(base_url=api, timeout=10) as http:
        async def api_up() -> bool:
            try:
                return (await http.get("/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_for(api_up, timeout=20, interval=0.1)
        for path in ("/metrics", "/executions?limit=3", "/stats", "/schedules",
                     "/admin/pauses", f"/executions/{some.execution_id}/history"):
            reply = await http.get(path)
            assert reply.status_code == 200, (path, reply.text)
        started = await http.post("/executions", json={"name": "acl-child", "input": 4})
        assert started.status_code == 201, started.text
        waited = await http.get(f"/executions/{started.json()['id']}/wait",
                                params={"timeout": 20})
        assert waited.json()["result"] == 8, waited.text

    results = await asyncio.gather(
        zart_cli(url, "status", some.execution_id), zart_cli(url, "list", "--limit", "3"),
        zart_cli(url, "history", some.execution_id, "--verify"), zart_cli(url, "stats"),
        zart_cli(url, "health"), zart_cli(url, "schedule", "list"), zart_cli(url, "pauses"))
    for code, out, err in results:
        assert code == 0, (out, err)


# -- the tests ------------------------------------------------------------------------------

IGNORED_REFUSALS = {"client|setinfo", "client"}
"""redis-py names its connections with CLIENT SETINFO and ignores a refusal (Redis 6.2 logs
it as ``client``, 7.2+ as ``client|setinfo``; 7.0 has no such subcommand). The rule leaves
it out: Redis 7.0 rejects an ACL rule naming a subcommand it does not know."""


def assert_nothing_refused(server: SecureRedis) -> None:
    refused = [e for e in acl_refusals(server) if e.get("object") not in IGNORED_REFUSALS]
    assert not refused, refused


@pytest.fixture
def password() -> str:
    return secrets.token_urlsafe(16)


@pytest.fixture
def acl_server(tmp_path: Path, password: str) -> Iterator[SecureRedis]:
    """Plain TCP, ``default`` off, the ``zart`` user of deploy/acl.conf, and two users
    each missing one of its rules: ``no-evalsha`` (a command) and ``no-config`` (a key)."""
    server = SecureRedis(tmp_path / "redis", users=[
        user_line("zart", password),
        user_line("no-evalsha", password, without="+evalsha"),
        user_line("no-config", password, without="~zart:config"),
    ]).start()
    yield server
    server.stop()


async def test_tls_and_acl_user_end_to_end(tmp_path: Path, password: str) -> None:
    """A worker subprocess, a Client and the CLI over ``rediss://`` (server certificate
    checked against the test's CA, hostname too), as deploy/acl.conf's user; the server
    has no plain-text port at all."""
    certs = make_certs(tmp_path / "certs")
    server = SecureRedis(tmp_path / "redis", certs=certs,
                         users=[user_line("zart", password)]).start()
    try:
        url = server.url("zart", password)
        assert url.startswith("rediss://zart:")
        assert url.endswith(f"?ssl_ca_certs={certs.ca}")
        effects = tmp_path / "effects.log"
        effects.touch()
        worker = _spawn(url, tmp_path / "worker.log", effects)
        try:
            async with Client(url) as client:
                loop = await client.start("crash-loop", {"n": 3}, execution_id="tls-loop")
                nap = await client.start("sleeper", {"seconds": 0.1})
                assert await client.result(loop, timeout=20) == 3
                assert await client.result(nap, timeout=20) == "woke"
            (code, out, err), (no_ca, _, refused) = await asyncio.gather(
                zart_cli(url, "status", "tls-loop"),
                # the system's CAs do not know the test's: the certificate is refused
                zart_cli(url.partition("?")[0], "status", "tls-loop"))
        finally:
            stop_worker(worker)
        assert code == 0, err
        assert json.loads(out)["status"] == "completed"
        assert no_ca == 1
        assert refused.startswith("zart-es: error: cannot reach Redis at rediss://zart:***@")
        assert "certificate verify failed" in refused
        assert len(refused.splitlines()) == 1
        assert_nothing_refused(server)
    finally:
        server.stop()


async def test_acl_user_runs_the_workload(acl_server: SecureRedis, password: str,
                                          tmp_path: Path) -> None:
    """Workers, a Client, the API and the CLI as deploy/acl.conf's user: every call
    succeeds and Redis refused nothing (its ACL LOG is empty)."""
    await run_workload(acl_server, acl_server.url("zart", password), tmp_path)
    assert_nothing_refused(acl_server)


async def test_missing_permissions_are_one_line_errors(acl_server: SecureRedis,
                                                       password: str) -> None:
    """A user missing a command or a key of the rule, or a wrong password, gets a
    one-line error from the CLI and an exception from the Client, promptly."""
    no_evalsha = acl_server.url("no-evalsha", password)
    no_config = acl_server.url("no-config", password)
    results = await asyncio.gather(
        zart_cli(no_evalsha, "start", "acl-child", "--input", "1"),
        zart_cli(no_config, "list"),
        zart_cli(acl_server.url("zart", "wrong"), "list"),
        zart_cli(acl_server.url(), "list"))  # the default user is off
    errors = []
    for code, out, err in results:
        assert (code, out) == (1, ""), err
        assert err.startswith("zart-es: error: "), err
        assert len(err.splitlines()) == 1, err  # no traceback
        errors.append(err.strip())
    assert errors[0] == ("zart-es: error: NoPermissionError: this user has no permissions "
                         "to run the 'evalsha' command")
    assert errors[1] == ("zart-es: error: NoPermissionError: this user has no permissions "
                         "to access one of the keys used as arguments")
    assert errors[2].startswith("zart-es: error: cannot reach Redis at redis://zart:***@")
    assert "invalid username-password pair" in errors[2], errors[2]
    assert errors[3].startswith("zart-es: error: cannot reach Redis at redis://127.0.0.1:")
    assert errors[3].endswith("Authentication required."), errors[3]
    async with Client(no_evalsha) as client:
        with pytest.raises(NoPermissionError, match="evalsha"):
            await asyncio.wait_for(client.start("acl-child", 1), timeout=10)
    # which key a refusal was about is in the server's ACL LOG, for the operator
    refused = {(e["username"], e["reason"], e["object"]) for e in acl_refusals(acl_server)}
    assert {("no-evalsha", "command", "evalsha"), ("no-config", "key", "zart:config"),
            ("zart", "auth", "AUTH")} <= refused, refused


async def test_a_worker_whose_user_lacks_a_permission_reports_unhealthy(
        acl_server: SecureRedis, password: str) -> None:
    """It cannot record anything: its probes must say so, not stay green while every
    execution sits pending (zart-es health reads the heartbeat file it stops touching)."""
    registry = Registry()

    @durable("acl-probe", registry=registry)
    async def probe(ctx: Context) -> int:
        return int(await ctx.step("one", lambda: 1))

    async with Client(acl_server.url("zart", password)) as client, Worker(
            acl_server.url("no-evalsha", password), registry=registry, lease_timeout=1,
            poll_interval=0.05) as worker:
        assert worker.healthy()
        await client.start("acl-probe")
        deadline = time.monotonic() + 10
        while worker.healthy():
            assert time.monotonic() < deadline, "the worker never reported the refusal"
            await asyncio.sleep(0.05)
