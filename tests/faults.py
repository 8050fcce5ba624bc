"""Fault injectors for tests: a Redis of the test's own, and a TCP proxy that can cut a database off."""

import socket
import subprocess
import threading
from pathlib import Path

import sqlalchemy as sa
from helpers import free_port, wait_until


def result_statuses(database_url: str) -> dict[str, int]:
    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT status, COUNT(*) FROM results GROUP BY status")).all()
    engine.dispose()
    return dict(rows)


def held_by(database: str, worker: str) -> int:
    """Rows a worker has started screening (taken under a token of one of its pool processes)."""
    query = "SELECT COUNT(*) FROM results WHERE lease_holder LIKE :worker AND lease_token IS NOT NULL"
    engine = sa.create_engine(database)
    with engine.connect() as connection:
        count = connection.execute(sa.text(query), {"worker": f"{worker}@%"}).scalar_one()
    engine.dispose()
    return count


def screenings(database: str) -> list[tuple[str, int, str | None]]:
    """Each row's status, how many screenings started on it, and whose lapsed lease it was taken over from."""
    engine = sa.create_engine(database)
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT status, screenings, lapsed_holder FROM results ORDER BY id")).all()
    engine.dispose()
    return [tuple(row) for row in rows]


class OwnRedis:
    """redis-server on a port of its own, append-only like docker-compose's, stopped and started at will."""

    def __init__(self, directory: Path) -> None:
        self.directory, self.port = directory, free_port()
        directory.mkdir(parents=True, exist_ok=True)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        subprocess.run(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--daemonize",
                "yes",
                "--logfile",
                str(self.directory / "redis.log"),
            ],
            check=True,
        )
        wait_until(lambda: self._cli("ping") == "PONG", 20, 0.1, "redis up")

    def stop(self) -> None:
        self._cli("shutdown")
        wait_until(lambda: self._cli("ping") != "PONG", 20, 0.1, "redis down")

    def _cli(self, *command: str) -> str:
        completed = subprocess.run(["redis-cli", "-p", str(self.port), *command], capture_output=True, text=True)
        return completed.stdout.strip()


class TcpProxy:
    """Forwards a loopback port to `target_port`; stop() refuses new connections and drops open ones."""

    def __init__(self, target_port: int) -> None:
        self.target_port, self.port = target_port, free_port()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        for sock in [self._listener, *self._sockets]:  # shutdown() also wakes the thread blocked in accept()
            _shutdown(sock)
            sock.close()
        self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            _shutdown(source)
            _shutdown(sink)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
