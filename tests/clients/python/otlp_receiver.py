"""A real OTLP trace receiver for the telemetry tests: the OTLP/gRPC TraceService (grpcio, the
generated services of opentelemetry-proto) and OTLP/HTTP with protobuf bodies at /v1/traces, on
free loopback ports. It keeps every span it receives with its resource's service name.
"""

from __future__ import annotations

import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


def attributes(kvs) -> dict:
    out = {}
    for kv in kvs:
        v = kv.value
        kind = v.WhichOneof("value")
        out[kv.key] = getattr(v, kind) if kind else None
    return out


class Received:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: list[dict] = []
        self.requests = 0

    def add(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        with self.lock:
            self.requests += 1
            for rs in request.resource_spans:
                service = attributes(rs.resource.attributes).get("service.name")
                for ss in rs.scope_spans:
                    for sp in ss.spans:
                        self.spans.append({
                            "service": service,
                            "name": sp.name,
                            "trace_id": sp.trace_id.hex(),
                            "span_id": sp.span_id.hex(),
                            "parent_span_id": sp.parent_span_id.hex(),
                            "attributes": attributes(sp.attributes),
                            "status_code": sp.status.code,
                            "status_message": sp.status.message,
                            "kind": sp.kind,
                        })

    def snapshot(self) -> list[dict]:
        with self.lock:
            return list(self.spans)

    def wait_for(self, predicate, timeout: float = 15.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            spans = self.snapshot()
            if predicate(spans):
                return spans
            time.sleep(0.1)
        return self.snapshot()


class _Grpc(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, received: Received, stall: threading.Event) -> None:
        self.received = received
        self.stall = stall

    def Export(self, request, context):  # noqa: N802 (the generated service's name)
        # A stalled receiver answers nothing until released (or the caller gives up).
        while self.stall.is_set() and context.is_active():
            time.sleep(0.05)
        self.received.add(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class GrpcReceiver:
    def __init__(self) -> None:
        self.received = Received()
        # Set: every Export hangs (a receiver that stopped answering).
        self.stall = threading.Event()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Grpc(self.received, self.stall), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.stall.clear()
        self.server.stop(grace=None)


class HttpReceiver:
    def __init__(self) -> None:
        self.received = Received()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                ok = self.path == "/v1/traces" and self.headers.get("Content-Type") == "application/x-protobuf"
                if ok:
                    received.add(trace_service_pb2.ExportTraceServiceRequest.FromString(body))
                reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if ok else 400)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
