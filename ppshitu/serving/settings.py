"""The service's limits and switches, one place (deploy/serve.py's flags map onto these fields).

Memory is bounded by construction, each term by one setting:
  request bodies being read   <= body_budget (a request that does not fit waits for nothing: 503)
  images being decoded        <= decode_slots x max_pixels x 3 bytes
  decoded images in flight    <= inflight_pixels x 3 bytes (+ one image: a lone job is always admitted)
  jobs waiting for inference  <= queue (then 503 + Retry-After)
  connections                 <= max_connections (then 503 + Retry-After, connection closed)
"""
import ipaddress
import math
import os
import re
from dataclasses import dataclass, field

TOKEN_ENV = "PPSHITU_TOKEN"
MiB = 1 << 20


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8866
    token: str = None                 # None: writes answer 403 (read-only service)
    workers: int = 1                  # inference threads, each owning its own predictors
    queue: int = 32                   # inference jobs admitted beyond the ones running
    queue_timeout: float = 30.0       # s a job may wait in the queue before it is answered 503
    write_queue: int = 8              # gallery writes waiting for the writer thread
    max_body: int = 16 * MiB          # bytes per request body (413 beyond; checked from Content-Length first)
    body_budget: int = 256 * MiB      # bytes of request bodies buffered at once, all requests together
    max_pixels: int = None            # per image (header checked before decoding); None: ppshitu.utils.image's
    decode_slots: int = 2             # images decoded at once
    inflight_pixels: int = 200_000_000  # decoded pixels held by admitted inference jobs together
    max_files: int = 64               # images per POST /api/items
    header_timeout: float = 10.0      # s to send a complete request line + headers (408, closed)
    read_timeout: float = 30.0        # s to send a complete body once the headers are in (408, closed)
    keep_alive: float = 5.0           # s an idle keep-alive connection stays open
    max_connections: int = 64         # open connections; beyond, requests get 503 and the connection closes
    max_header_bytes: int = 16 * 1024  # request line + headers (h11's incomplete-event limit): 400 beyond
    upload_dir: str = None            # where images added through the API are kept; None: beside the gallery
                                      # (service.default_upload_dir; a Milvus server needs one)
    allowed_hosts: tuple = None       # Host names answered (+ loopback names on loopback); None off loopback: any
    thumbnail_cache: int = 512        # thumbnails kept in memory (JPEG bytes)
    access_log: bool = False
    log_level: str = "warning"
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.token is None:
            self.token = os.environ.get(TOKEN_ENV) or None
        if self.token is not None and not str(self.token).strip():
            self.token = None
        for name in ("workers", "queue", "write_queue", "max_body", "body_budget", "decode_slots",
                     "inflight_pixels", "max_files", "max_connections", "max_header_bytes", "thumbnail_cache"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        from ..schemas import MAX_THREADS
        for name in ("workers", "decode_slots"):  # threads: at most MAX_THREADS (ppshitu/schemas.py)
            if int(getattr(self, name)) > MAX_THREADS:
                raise ValueError(f"{name} must be from 1 to {MAX_THREADS} (threads), got {getattr(self, name)!r}")
        for name in ("queue_timeout", "header_timeout", "read_timeout", "keep_alive"):
            value = float(getattr(self, name))
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number of seconds > 0, got {getattr(self, name)!r}")
        if not 0 <= int(self.port) <= 65535:
            raise ValueError(f"port must be from 0 to 65535 (0: any free port), got {self.port!r}")
        if self.max_pixels is not None and int(self.max_pixels) < 1:
            raise ValueError(f"max_pixels must be >= 1, got {self.max_pixels!r}")
        for host in self.allowed_hosts or ():
            if not is_host_name(host):  # '' or 'example.com:8866' would never match a Host header: no request served
                raise ValueError(f"allowed_hosts (--allowed-host): {host!r} is not a host name or an IP address "
                                 f"(give a name like shop.example.com or 192.168.1.5, without a port)")
        if is_loopback(self.host):
            # a page on another site that rebinds its DNS name to 127.0.0.1 must not read the gallery
            self.allowed_hosts = tuple(self.allowed_hosts or ()) + ("127.0.0.1", "localhost", "::1", "[::1]")

    @property
    def writes_enabled(self):
        return self.token is not None


_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


def is_host_name(host):
    """Whether `host` can be a Host header's name: an IP address (IPv6 with or without brackets) or a DNS name
    (dot-separated labels of letters, digits, '-' and '_', 253 characters at most); never empty, no port."""
    if not isinstance(host, str) or not host or host != host.strip():
        return False
    try:
        ipaddress.ip_address(host[1:-1] if host.startswith("[") and host.endswith("]") else host)
        return True
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host
    return 0 < len(name) <= 253 and all(_HOST_LABEL.match(label) for label in name.split("."))


def is_loopback(host):
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
