"""uvicorn's h11 protocol with the guards uvicorn leaves out, and every refusal in JSON.

uvicorn times out idle keep-alive connections only after a first response, so a client that
connects and sends a request line and headers slowly (slow loris), or a body shorter than its
Content-Length, holds its connection forever; its `limit_concurrency` and malformed-request answers
are text/plain. This subclass adds, per connection:

- a header timeout: the request line and headers must be complete within `header_timeout` seconds
  of the connection, or of the first byte of a next request on a kept-alive connection: else 408
  (JSON) and the connection is closed (an idle kept-alive connection is closed after keep_alive s);
- a body timeout: the body must be complete within `read_timeout` (+ a grace, the routes answer
  408 themselves at `read_timeout`) of its headers: else the connection is closed;
- a connection cap: past `max_connections` open connections (or as many requests in flight), a
  request is answered 503 (JSON, Retry-After) and its connection closed;
- malformed requests (`Content-Length: abc`, headers past h11's buffer limit) answered 400 in JSON
  instead of text (app.Guard answers 431 for a complete header block over max_header_bytes).
"""
import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .errors import raw_error

BODY_GRACE_S = 2.0


def raw_response(status, reason, message, extra_headers=()):
    """The bytes of a JSON refusal (errors.raw_error) with its status line, written on the connection."""
    headers, body = raw_error(status, message, extra_headers)
    head = f"HTTP/1.1 {status} {reason}\r\n".encode() + b"".join(k + b": " + v + b"\r\n" for k, v in headers)
    return head + b"\r\n" + body


def make_protocol(settings):
    """An H11Protocol subclass bound to `settings` (uvicorn.Config(http=...) takes a class)."""

    async def busy_app(scope, receive, send):
        headers, body = raw_error(503, f"the server has {settings.max_connections} connections open (its limit); "
                                        f"retry later", [(b"retry-after", b"1")])
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    class GuardedH11Protocol(H11Protocol):
        def connection_made(self, transport):
            super().connection_made(transport)
            self._guard = None
            self._real_app = self.app
            self._arm(settings.header_timeout, self._on_header_timeout)

        def connection_lost(self, exc):
            self._disarm()
            super().connection_lost(exc)

        def _arm(self, delay, callback):
            self._disarm()
            self._guard = self.loop.call_later(delay, callback)

        def _disarm(self):
            if getattr(self, "_guard", None) is not None:
                self._guard.cancel()
                self._guard = None

        def data_received(self, data):
            if self._guard is None and self.conn.their_state is h11.IDLE:
                self._arm(settings.header_timeout, self._on_header_timeout)  # the next request has begun
            super().data_received(data)

        def handle_events(self):
            # the cap, decided as uvicorn's limit_concurrency is (when a request arrives), answered in JSON
            over = len(self.connections) > settings.max_connections or len(self.tasks) >= settings.max_connections
            self.app = busy_app if over else self._real_app
            cycle = self.cycle
            super().handle_events()
            if self.cycle is not cycle and not self.transport.is_closing():
                # a request's headers are in: now its body has read_timeout
                if self.conn.their_state is h11.SEND_BODY:
                    self._arm(settings.read_timeout + BODY_GRACE_S, self._on_body_timeout)
                else:
                    self._disarm()

        def on_response_complete(self):
            self._disarm()  # idle now: uvicorn's keep-alive timeout closes it; data_received re-arms
            super().on_response_complete()

        def _on_header_timeout(self):
            self._guard = None
            if self.transport.is_closing():
                return
            if self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete):
                self.transport.write(raw_response(408, "Request Timeout", f"the request line and headers did not "
                                                                          f"arrive within {settings.header_timeout:g} s"))
                self.transport.close()

        def _on_body_timeout(self):
            self._guard = None
            if self.transport.is_closing() or self.conn.their_state is not h11.SEND_BODY:
                return
            if self.cycle is not None and not self.cycle.response_started:
                self.transport.write(raw_response(408, "Request Timeout", f"the request body did not arrive "
                                                                          f"within {settings.read_timeout:g} s"))
            self.transport.close()

        def send_400_response(self, msg):
            self.transport.write(raw_response(400, "Bad Request", "malformed HTTP request (request line, headers "
                                                                  "or Content-Length); nothing was processed"))
            self.transport.close()

    return GuardedH11Protocol
