"""Real servers for the drop stores' tests, on free ports of 127.0.0.1, in temporary folders:
Debian's OpenSSH server for SFTP, with a host key, a user key and an authorized_keys file of its
own; and moto's standalone server, which speaks the S3 protocol over HTTP and stands in for a
bucket. Each test worker starts its own and ends it. A server that is not installed is a skip on a
laptop and a failure in CI (`.ci/run` installs both)."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmarks.latency import free_port
from bspk_pipelines_tests.builders import needed

SSHD = Path("/usr/sbin/sshd")


def _wait_for_port(port: int, process: subprocess.Popen, what: str, log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited at start: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port}: {log.read_text()[-2000:]}")


def _end(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass(frozen=True)
class SftpServer:
    host: str
    port: int
    user: str
    key_file: Path  # the user's private key
    known_hosts: Path  # holds the server's host key
    home: Path  # a folder the tests own on the server

    def url(self, path: Path) -> str:
        return f"sftp://{self.user}@{self.host}:{self.port}{path}"


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@pytest.fixture(scope="session")
def sftp_server(tmp_path_factory) -> Iterator[SftpServer]:
    """An OpenSSH server on 127.0.0.1 taking the current user with a key of its own, SFTP only."""
    if not SSHD.exists() or not shutil.which("ssh-keygen"):
        needed("OpenSSH's server (Debian's openssh-server)")
    root = tmp_path_factory.mktemp("sshd")
    _keygen(root / "host_key")
    _keygen(root / "user_key")
    shutil.copyfile(root / "user_key.pub", root / "authorized_keys")
    port = free_port()
    (root / "sshd_config").write_text(f"""\
ListenAddress 127.0.0.1
Port {port}
HostKey {root / 'host_key'}
PidFile {root / 'sshd.pid'}
AuthorizedKeysFile {root / 'authorized_keys'}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
""")
    Path("/run/sshd").mkdir(exist_ok=True)  # its privilege separation folder, when run as root
    log = root / "sshd.log"
    with log.open("w") as out:
        process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(root / "sshd_config")], stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        _wait_for_port(port, process, "sshd", log)
        host_key = (root / "host_key.pub").read_text().split()
        (root / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
        home = root / "files"
        home.mkdir()
        yield SftpServer("127.0.0.1", port, getpass.getuser(), root / "user_key", root / "known_hosts", home)
    finally:
        _end(process)


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    def environ(self) -> dict[str, str]:
        """What boto3 needs to reach it: the endpoint and credentials (moto takes any)."""
        return {"AWS_ENDPOINT_URL_S3": self.endpoint, "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[S3Server]:
    """moto's standalone S3 server on 127.0.0.1: a stand-in for a bucket, spoken to over HTTP."""
    moto = Path(sys.executable).with_name("moto_server")
    if not moto.exists():
        needed("moto's server (pip install 'moto[server]', in the test extra)")
    root = tmp_path_factory.mktemp("moto")
    port = free_port()
    log = root / "moto.log"
    with log.open("w") as out:
        process = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        _wait_for_port(port, process, "moto_server", log)
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        _end(process)


@pytest.fixture
def s3(s3_server, monkeypatch) -> S3Server:
    """The S3 stand-in, with boto3's environment set for this test."""
    for name, value in s3_server.environ().items():
        monkeypatch.setenv(name, value)
    return s3_server
