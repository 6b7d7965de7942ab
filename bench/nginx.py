"""nginx on a free loopback port, from the config template the project ships."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from .measure import cpu_seconds, descendants

TEMPLATE = Path(__file__).with_name("nginx.conf")
START_TIMEOUT_S = 10.0


def find_nginx() -> str:
    """The nginx binary; Debian puts it in /usr/sbin, which a normal user's PATH may lack."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise RuntimeError("nginx not found: `make bench` installs it (apt-get install nginx)")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Nginx:
    """One nginx serving `root` on 127.0.0.1:`port`; its files live in `prefix`.

    Started by root, nginx's worker runs as "nobody": `root` and its parents must be
    world-readable (mkdtemp's folders are not).
    """

    def __init__(self, root: Path, port: int, prefix: Path) -> None:
        self.root = root
        self.port = port
        self.prefix = prefix
        self.access_log = prefix / "access.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.prefix.mkdir(parents=True, exist_ok=True)
        conf = self.prefix / "nginx.conf"
        text = TEMPLATE.read_text(encoding="utf-8")
        for key, value in (("@PREFIX@", self.prefix), ("@ROOT@", self.root),
                           ("@PORT@", self.port)):
            text = text.replace(key, str(value))
        conf.write_text(text, encoding="utf-8")
        self.access_log.touch()
        self._proc = subprocess.Popen(
            [find_nginx(), "-p", str(self.prefix), "-c", str(conf), "-e",
             str(self.prefix / "error.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        log = (self.prefix / "error.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"nginx did not start on 127.0.0.1:{self.port}:\n{log}")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()  # SIGTERM: nginx's fast shutdown, workers included
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def cpu_seconds(self) -> float:
        """CPU time nginx has used so far, its master and worker together: the bench's server
        shares the machine's cores with the contender it serves."""
        if self._proc is None:
            return 0.0
        return sum(cpu_seconds(pid) for pid in [self._proc.pid, *descendants(self._proc.pid)])

    def log_size(self) -> int:
        return self.access_log.stat().st_size

    def requests_since(self, offset: int) -> list[tuple[str, int]]:
        """(request URI, status) of each request logged after byte `offset` of the log."""
        with self.access_log.open("rb") as f:
            f.seek(offset)
            lines = f.read().decode("utf-8", "replace").splitlines()
        out = []
        for line in lines:
            uri, status, _ = line.rsplit(" ", 2)
            out.append((uri, int(status)))
        return out

