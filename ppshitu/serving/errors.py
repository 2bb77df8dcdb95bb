"""What a request can be answered with besides success: an HTTP status, a message, maybe headers."""


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
