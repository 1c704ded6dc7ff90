"""A minimal raw HTTP/2 gRPC client (h2), to send what grpcio clients cannot: e.g. ``grpc-encoding: zstd``."""

from __future__ import annotations

import socket
import struct

import h2.config
import h2.connection
import h2.events


def raw_unary(port: int, path: str, payload: bytes, encoding: str | None = None, compressed: bool = False,
              timeout: float = 10.0) -> tuple[str | None, str | None]:  # fmt: skip
    """Send one gRPC unary call; return ``(grpc-status, grpc-message)`` from the trailers (or headers)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    headers = [
        (":method", "POST"), (":scheme", "http"), (":path", path), (":authority", f"127.0.0.1:{port}"),
        ("content-type", "application/grpc"), ("te", "trailers"),
    ]  # fmt: skip
    if encoding:
        headers.append(("grpc-encoding", encoding))
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, headers)
    body = struct.pack(">BI", 1 if compressed else 0, len(payload)) + payload
    conn.send_data(sid, body, end_stream=True)
    sock.sendall(conn.data_to_send())
    status = message = None
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            for ev in conn.receive_data(data):
                if isinstance(ev, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                    for k, v in ev.headers:
                        if k == "grpc-status":
                            status = v
                        elif k == "grpc-message":
                            message = v
                elif isinstance(ev, h2.events.DataReceived):
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                if isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                    sock.sendall(conn.data_to_send())
                    return status, message
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()
    return status, message
