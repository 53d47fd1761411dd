"""Workers that share one listening socket take turns accepting its connections.

With ``workers > 1`` the processes share one listening socket. An event loop (uvloop's as
much as asyncio's) accepts every connection waiting in the kernel's queue each time the
socket turns readable, so a burst of clients connecting at once lands on whichever worker
wakes first, and keep-alive clients stay where they landed: one worker then serves twice
the other's share (and its clients wait twice as long) for as long as the connections
live. So each worker accepts by itself, from its own reader on the shared socket, and only
while it holds no more than one connection above the least loaded worker: every worker
publishes its open connections in a small array of shared memory
(:class:`ConnectionBoard`). A worker over its share stops reading the socket and looks
again every few milliseconds; the least loaded one never stops, so some worker always
accepts. A connection that waits in the queue through one of those looks (the others are
busy or stuck) is taken anyway, so balance never costs more than a few milliseconds of
waiting. The kernel's queue keeps its full length (``backlog``).

:class:`ConnectionBoard` is the shared table, :class:`BalancedListener` one worker's accept
loop; :mod:`geoclim.serving.server` starts the workers and gives each its seat. Only public
event-loop calls are used (``add_reader``, ``connect_accepted_socket``). Torch-free.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import multiprocessing
import select
import socket
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

ABSENT = -1
"""A :class:`ConnectionBoard` slot whose worker is not accepting (not started, stopping, dead)."""
SLACK = 1
"""A worker accepts while it holds at most this many connections above the least loaded."""
LOOK_SECONDS = 0.005
"""How often a worker over its share looks at the board and the queue again."""


class ConnectionBoard:
    """Each worker's open connections, in shared memory (see the module docstring).

    Worker ``slot`` writes only ``counts[slot]`` and reads all of them; aligned 64-bit
    stores and loads need no lock, and a stale value only shifts the balance by a
    connection or two for a moment. The board travels to the workers as an argument of
    ``spawn`` (its memory is inherited, not copied).
    """

    def __init__(self, workers: int, context: Any = None):
        ctx = context or multiprocessing.get_context("spawn")
        self.counts = ctx.RawArray("q", [ABSENT] * workers)

    def set(self, slot: int, count: int) -> None:
        """Publish worker ``slot``'s open connections (:data:`ABSENT`: not accepting)."""
        self.counts[slot] = count

    def may_accept(self, slot: int, mine: int) -> bool:
        """Whether worker ``slot``, holding ``mine`` connections, may accept one more."""
        others = [c for i, c in enumerate(self.counts) if i != slot and c != ABSENT]
        return not others or mine <= min(others) + SLACK


class BalancedListener:
    """One worker's accept loop on a listening socket shared with the others.

    It stands where uvicorn keeps its ``asyncio.Server`` objects and offers what uvicorn
    calls on them at shutdown: :meth:`close` (stop accepting; the socket itself is closed
    by uvicorn) and :meth:`wait_closed`. Accepted sockets become connections through the
    loop's public ``connect_accepted_socket``.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        protocol_factory: Callable[[], asyncio.Protocol],
        sock: socket.socket,
        ssl: Any,
        board: ConnectionBoard,
        slot: int,
        server_state: Any,
    ):
        self.loop, self.protocol_factory, self.sock, self.ssl = loop, protocol_factory, sock, ssl
        self.board, self.slot, self.server_state = board, slot, server_state
        self.sockets = [sock]
        self._reading = False
        self._look: asyncio.TimerHandle | None = None
        self._pending = 0  # accepted, not yet a connection of server_state
        self._queued_at_last_look = False
        self._closed = False
        self._queue = select.poll()  # (not select.select: descriptors may pass 1024)
        self._queue.register(sock.fileno(), select.POLLIN)
        self.publish()
        self._read()

    def open_connections(self) -> int:
        """Connections this worker holds, including those accepted a moment ago."""
        return len(self.server_state.connections) + self._pending

    def publish(self) -> None:
        """Write this worker's open connections on the board (nothing once closed)."""
        if not self._closed:
            self.board.set(self.slot, self.open_connections())

    def close(self) -> None:
        """Stop accepting and leave the board; the other workers take every connection."""
        self._closed = True
        self._stop_reading()
        if self._look is not None:
            self._look.cancel()
            self._look = None
        self.board.set(self.slot, ABSENT)

    async def wait_closed(self) -> None:
        """Nothing to wait for: uvicorn waits for the connections itself."""

    def _read(self) -> None:
        if not self._reading and not self._closed:
            self.loop.add_reader(self.sock.fileno(), self._on_readable)
            self._reading = True

    def _stop_reading(self) -> None:
        if self._reading:
            self.loop.remove_reader(self.sock.fileno())
            self._reading = False

    def _on_readable(self) -> None:
        while self.board.may_accept(self.slot, self.open_connections()):
            if not self._accept():
                return  # the queue is empty (or accept failed and a retry is set)
        self._stop_reading()  # over our share: the others accept until we look again
        self._queued_at_last_look = False
        self._look = self.loop.call_later(LOOK_SECONDS, self._look_again)

    def _look_again(self) -> None:
        self._look = None
        if self._closed:
            return
        if self.board.may_accept(self.slot, self.open_connections()):
            self._read()
            return
        queued = bool(self._queue.poll(0))
        if queued and self._queued_at_last_look:  # nobody took it for a whole look
            self._accept()
            queued = False
        self._queued_at_last_look = queued
        if self._look is None:  # _accept may have set a retry after an error
            self._look = self.loop.call_later(LOOK_SECONDS, self._look_again)

    def _accept(self) -> bool:
        """Accept one connection; ``False`` when none is waiting or accept failed."""
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return False
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                raise
            log.warning("accept failed (%s): retrying in 1 s", exc)  # out of descriptors
            self._stop_reading()
            if self._look is not None:
                self._look.cancel()
            self._look = self.loop.call_later(1.0, self._look_again)
            return False
        conn.setblocking(False)
        self._pending += 1
        self.publish()
        self.loop.create_task(self._connect(conn))
        return True

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(self.protocol_factory, conn, ssl=self.ssl)
        except Exception as exc:  # a failed TLS handshake, a peer gone: this connection only
            log.debug("connection not set up: %r", exc)
            conn.close()
        finally:
            self._pending -= 1
            self.publish()
