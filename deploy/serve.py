#!/usr/bin/env python
"""Serve recognition over HTTP (stdlib only, so a deployment needs nothing beyond requirements.txt).

    python deploy/serve.py -c configs/inference/inference_general.yaml [--host 127.0.0.1 --port 8866]

    POST /predict      body: the image file's bytes (JPEG/PNG/...)  -> {"results": [...]}
    GET  /health       -> {"status": "ok", "gallery_size": N, "labels": M}

One RecognitionSystem serves all requests; a lock serialises inference because a Paddle
predictor is not thread-safe, while decoding and HTTP handling stay concurrent.
"""
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MAX_BODY = 32 << 20  # refuse uploads over 32 MiB instead of reading them into memory


def make_handler(system):
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, code, payload):
            body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # noqa: N802 - http.server's naming
            if self.path != "/health":
                return self._reply(404, {"error": f"no route {self.path}; use GET /health or POST /predict"})
            self._reply(200, {"status": "ok", "gallery_size": len(system.gallery),
                              "labels": len(system.gallery.labels())})

        def do_POST(self):  # noqa: N802
            if self.path != "/predict":
                return self._reply(404, {"error": f"no route {self.path}; use POST /predict"})
            size = int(self.headers.get("Content-Length") or 0)
            if not 0 < size <= MAX_BODY:
                return self._reply(413 if size > MAX_BODY else 400,
                                   {"error": f"send the image bytes as the body (1 byte to {MAX_BODY} bytes)"})
            data = np.frombuffer(self.rfile.read(size), np.uint8)
            bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
            if bgr is None:
                return self._reply(400, {"error": "the body is not a decodable image"})
            with lock:
                results = system.predict(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            self._reply(200, {"results": results})

        def log_message(self, fmt, *args):  # one line per request on stderr, without the default noise
            sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    return Handler


def make_server(system, host="127.0.0.1", port=8866):
    return ThreadingHTTPServer((host, port), make_handler(system))


def main():
    from ppshitu.cli import config_parser, load_cli_config, run_main
    from ppshitu.schemas import INFER_SCHEMA
    from ppshitu.system import RecognitionSystem

    def serve():
        parser = config_parser(__doc__.splitlines()[0])
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8866)
        args = parser.parse_args()
        system = RecognitionSystem.from_config(load_cli_config(args, INFER_SCHEMA))
        server = make_server(system, args.host, args.port)
        print(f"serving on http://{args.host}:{server.server_port} (POST /predict, GET /health)", flush=True)
        server.serve_forever()

    run_main(serve)


if __name__ == "__main__":
    main()
