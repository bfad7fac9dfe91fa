#!/usr/bin/env python3
"""A minimal OTLP/HTTP trace receiver for the overhead benchmark: accepts POST /v1/traces,
counts requests and bytes, answers with an empty ExportTraceServiceResponse. It does not decode
the spans (the telemetry tests check them with a decoding receiver); here only the server's
cost is measured. Prints its port on the first line; on SIGTERM prints "requests bytes".
"""
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

count = [0, 0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802
        n = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(n)
        count[0] += 1
        count[1] += n
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)


def stop(*_):
    print(count[0], count[1], flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
server.serve_forever()
