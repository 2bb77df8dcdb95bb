"""What a request can be answered with besides success: an HTTP status, a message, maybe headers; and
the one JSON shape of every refusal, at every layer (error_document)."""
import json

from starlette.responses import JSONResponse


class ServiceError(Exception):
    status = 400

    def __init__(self, message, status=None, headers=None, **extra):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.headers = headers or {}
        self.extra = extra


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class TooLarge(ServiceError):
    """The body is refused unread: the connection is closed after the answer (the client may still
    be sending it)."""
    status = 413

    def __init__(self, message):
        super().__init__(message, headers={"Connection": "close"})


class Unauthorized(ServiceError):
    status = 401

    def __init__(self, message):
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="ppshitu"'})


class Forbidden(ServiceError):
    status = 403


class RequestTimeout(ServiceError):
    status = 408

    def __init__(self, message):
        super().__init__(message, headers={"Connection": "close"})


# ---------------------------------------------------------------- the one shape of every refusal
def error_document(status, message, **extra):
    """The JSON body of every refusal, at every layer: {"error": message, "status": status, ...}."""
    return {"error": message, "status": status, **extra}


def error_response(status, message, headers=None, **extra):
    """A refusal answered by the app (its exception handlers)."""
    return JSONResponse(error_document(status, message, **extra), status_code=status, headers=headers)


def raw_error(status, message, extra_headers=(), close=True):
    """(headers, body) of a refusal written below the app: by protocol.py on the connection itself and by
    app.Guard before the app runs; `close`: the connection is closed after it."""
    body = json.dumps(error_document(status, message)).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return headers + ([(b"connection", b"close")] if close else []) + list(extra_headers), body
