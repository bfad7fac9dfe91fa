"""A real bkg-db server process on free loopback ports, for the client test suites.

The binary comes from `BKG_DB_BIN`, else `$CARGO_TARGET_DIR/debug/bkg-db`, else
`~/.cache/bkg-target/debug/bkg-db`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from contextlib import closing
from pathlib import Path


def _server_binary() -> Path:
    if os.environ.get("BKG_DB_BIN"):
        return Path(os.environ["BKG_DB_BIN"])
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.expanduser("~/.cache/bkg-target")
    return Path(target) / "debug" / "bkg-db"


def _free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(http_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


class Server:
    def __init__(self, env: dict[str, str] | None = None) -> None:
        binary = _server_binary()
        for _ in range(50):  # the binary may be replaced by a concurrent build
            if binary.exists():
                break
            time.sleep(0.2)
        assert binary.exists(), f"bkg-db binary not found at {binary} (set BKG_DB_BIN)"
        self.password = "pw-" + secrets.token_hex(8)
        self.dir = Path(tempfile.mkdtemp(prefix="bkg-psycopg-"))
        self.log_path = self.dir / "server.log"
        last_error = ""
        for _attempt in range(3):  # a free port can be taken between probe and bind
            self.pg_port, self.http_port, self.flight_port = _free_port(), _free_port(), _free_port()
            data = self.dir / f"data-{_attempt}"
            self.data = data
            self.log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                [
                    str(binary), "serve",
                    "--data-dir", str(data),
                    "--pg-listen", f"127.0.0.1:{self.pg_port}",
                    "--http-listen", f"127.0.0.1:{self.http_port}",
                    "--flight-listen", f"127.0.0.1:{self.flight_port}",
                ],
                env={**os.environ, "BKG_DB_PASSWORD": self.password, "BKG_DB_LOG": "warn", **(env or {})},
                stdout=subprocess.DEVNULL,
                stderr=self.log,
            )
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and self.proc.poll() is None:
                if _healthy(self.http_port):
                    return
                time.sleep(0.1)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.log.close()
            last_error = self.log_path.read_text(errors="replace")[-2000:]
        shutil.rmtree(self.dir, ignore_errors=True)
        raise RuntimeError(f"bkg-db did not become healthy:\n{last_error}")

    def api_keys(self) -> tuple[str, str]:
        """(anon, service_role) as the server stored them on first start."""
        import json

        keys = json.loads((self.data / "auth" / "keys.json").read_text())
        return keys["anon_key"], keys["service_key"]

    @property
    def dsn(self) -> str:
        return (
            f"host=127.0.0.1 port={self.pg_port} user=postgres "
            f"password={self.password} dbname=postgres connect_timeout=10"
        )

    def stop(self) -> int:
        try:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return -9
        finally:
            self.log.close()
            shutil.rmtree(self.dir, ignore_errors=True)
