"""Socket Mode: ``apps.connections.open`` tickets, the WebSocket, envelopes and their acks."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import secrets
import time
import uuid
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp import web

from sandbox.slack.limits import SOCKET_ACK_TIMEOUT, SOCKET_TICKET_TTL
from sandbox.slack.models import SocketConnection, SocketEnvelope
from sandbox.slack.workspace import Workspace

JSON = dict[str, Any]


class SocketMode(Workspace):
    """Socket Mode as Slack serves it (see ``SlackSandbox``): tickets, ``hello``, envelopes out,
    acks in, ``disconnect`` before refreshing or going away."""

    def _apps_connections_open(self, args: JSON) -> JSON:
        """A one-time WebSocket URL for Socket Mode (the app-level token was checked by _dispatch)."""
        ticket = secrets.token_urlsafe(18)
        self._socket_tickets[ticket] = time.monotonic()
        ws_base = "ws://" + self.base_url.removeprefix("http://")
        return {"url": f"{ws_base}/socket/{ticket}"}

    async def send_envelope(
        self,
        kind: str,
        payload: Mapping[str, Any],
        *,
        accepts_response_payload: bool = False,
        retry_attempt: int | None = None,
        retry_reason: str | None = None,
        timeout: float = SOCKET_ACK_TIMEOUT,
    ) -> SocketEnvelope:
        """Send a ``slash_commands`` / ``interactive`` / ``events_api`` envelope and wait for its ack.

        Waits up to ``timeout`` in all for an open connection and the ack; connections take
        envelopes in turn. Never raises for a missing ack: the returned (and recorded) envelope has
        ``acked`` False and ``error`` set to ``no_connection``, ``ack_timeout``,
        ``connection_closed`` or ``send_failed``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        envelope = SocketEnvelope(
            envelope_id=str(uuid.uuid4()),
            type=kind,
            payload=copy.deepcopy(dict(payload)),
            accepts_response_payload=accepts_response_payload,
            connection_id=None,
            sent=time.time(),
            retry_attempt=retry_attempt,
            retry_reason=retry_reason,
        )
        try:
            open_now: list[SocketConnection] = await self.wait_for(lambda s: s.connected_sockets, timeout)
        except TimeoutError:
            envelope.error = "no_connection"
            self.socket_envelopes.append(envelope)
            self._notify()
            return envelope
        conn = open_now[self._socket_next % len(open_now)]
        self._socket_next += 1
        envelope.connection_id = conn.id
        pending: asyncio.Future[None] = loop.create_future()
        self._socket_pending[envelope.envelope_id] = pending
        self.socket_envelopes.append(envelope)
        self._notify()
        try:
            assert conn._ws is not None
            try:
                await conn._ws.send_str(json.dumps(envelope.message()))
            except (ConnectionError, RuntimeError):
                envelope.error = "send_failed"
                return envelope
            await asyncio.wait({pending}, timeout=max(0.0, deadline - loop.time()))
            if not envelope.acked and envelope.error is None:
                envelope.error = "ack_timeout"
            return envelope
        finally:
            self._socket_pending.pop(envelope.envelope_id, None)
            self._notify()

    async def disconnect_sockets(self, reason: str = "refresh_requested", *, close: bool = False) -> None:
        """Send ``{"type": "disconnect", "reason": ...}`` to every open connection, as Slack does
        before refreshing (``warning``, ``refresh_requested``) or disabling (``link_disabled``) the
        link. With ``close`` the sandbox then closes the sockets itself (going away); otherwise the
        client is expected to reconnect and close the old socket."""
        message = {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-sandbox"}}
        conns = self.connected_sockets
        for conn in conns:
            assert conn._ws is not None
            with contextlib.suppress(ConnectionError, RuntimeError):
                await conn._ws.send_json(message)
        if close:
            for conn in conns:
                assert conn._ws is not None
                await conn._ws.close(code=aiohttp.WSCloseCode.GOING_AWAY, message=reason.encode())

    async def _handle_socket(self, request: web.Request) -> web.StreamResponse:
        """The Socket Mode WebSocket: ``hello`` on connect, then acks (and anything else) in."""
        ticket = request.match_info["ticket"]
        issued = self._socket_tickets.pop(ticket, None)
        if issued is None or time.monotonic() - issued > SOCKET_TICKET_TTL:
            return web.Response(status=401, text="invalid_ticket")
        if self._stopping:
            return web.Response(status=503, text="shutting_down")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = SocketConnection(id=f"WS{next(self._ids):08d}", ticket=ticket, opened=time.time(), _ws=ws)
        try:
            await ws.send_json(
                {
                    "type": "hello",
                    "num_connections": len(self.connected_sockets) + 1,
                    "debug_info": {
                        "host": "applink-sandbox",
                        "build_number": 1,
                        "approximate_connection_time": 18060,
                    },
                    "connection_info": {"app_id": self.app_id},
                }
            )
            self.socket_connections.append(conn)
            self._notify()
            async for frame in ws:
                if frame.type == aiohttp.WSMsgType.TEXT:
                    self._on_socket_text(conn, frame.data)
                elif frame.type == aiohttp.WSMsgType.BINARY:
                    conn.received.append({"binary": base64.b64encode(frame.data).decode()})
                    self._notify()
        finally:
            conn.closed = time.time()
            for envelope in self.socket_envelopes:
                pending = self._socket_pending.get(envelope.envelope_id)
                if envelope.connection_id == conn.id and pending is not None and not pending.done():
                    envelope.error = "connection_closed"
                    pending.set_result(None)
            self._notify()
        return ws

    def _on_socket_text(self, conn: SocketConnection, data: str) -> None:
        try:
            frame = json.loads(data)
        except ValueError:
            frame = None
        if not isinstance(frame, dict):
            conn.received.append({"raw": data})
        elif "envelope_id" in frame and "type" not in frame:
            self.socket_acks.append(frame)
            envelope_id = frame.get("envelope_id")
            pending = self._socket_pending.get(envelope_id) if isinstance(envelope_id, str) else None
            envelope = next((e for e in self.socket_envelopes if e.envelope_id == envelope_id), None)
            if envelope is not None and not envelope.acked and pending is not None and not pending.done():
                payload = frame.get("payload")
                envelope.acked = True
                envelope.ack_payload = payload if isinstance(payload, dict) else None
                envelope.ack_time = time.time()
                pending.set_result(None)
        else:
            conn.received.append(frame)
        self._notify()
