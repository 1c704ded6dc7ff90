"""Config of the OTLP/gRPC receiver (``receiver:``)."""

from __future__ import annotations

from pydantic import Field

from detector.config.types import Duration, Endpoint, StrictModel


class KeepaliveConfig(StrictModel):
    """gRPC server keepalive (grpc core channel args ``grpc.keepalive_*``)."""

    time: Duration = Field("2h", description="send a keepalive ping after this idle time")
    timeout: Duration = Field("20s", description="close the connection when a ping is not answered within this")
    min_client_ping_interval: Duration = Field("10s", description="clients pinging more often are told to back off")


class TlsConfig(StrictModel):
    """Server TLS (``grpc.dynamic_ssl_server_credentials``); mutual TLS when ``client_ca_file`` is set.

    The files are re-read on SIGHUP: new connections get the new certificate / client CA,
    open ones keep theirs. Switching TLS or mTLS on or off needs a restart."""

    cert_file: str = Field(..., description="PEM server certificate (chain)")
    key_file: str = Field(..., description="PEM private key of cert_file")
    client_ca_file: str | None = Field(
        None, description="PEM CA bundle; when set, clients must present a certificate it signed (mTLS)"
    )


class AuthConfig(StrictModel):
    """Bearer-token authentication of OTLP clients (``authorization: Bearer <token>`` metadata)."""

    bearer_token_file: str = Field(
        ..., description="file holding the expected token (surrounding whitespace stripped); re-read on SIGHUP; never logged"
    )


class GrpcConfig(StrictModel):
    """The OTLP/gRPC endpoint. Compression: gzip or none (identity)."""

    # zstd/snappy are refused by grpcio itself with INTERNAL "Error parsing 'grpc-encoding' metadata".

    endpoint: Endpoint = Field("0.0.0.0:4317", description="host:port to listen on")
    max_recv_msg_size_mib: float = Field(16, gt=0, description="largest accepted request, MiB, after decompression")
    max_concurrent_streams: int = Field(64, gt=0, description="HTTP/2 streams per connection")
    workers: int = Field(16, gt=0, description="handler threads (each decodes and enqueues one request)")
    keepalive: KeepaliveConfig = Field(default_factory=KeepaliveConfig)
    retry_delay: Duration = Field(
        "1s", description="RetryInfo delay sent with RESOURCE_EXHAUSTED when the analysis queue is full"
    )
    tls: TlsConfig | None = Field(None, description="null = plaintext; set cert_file/key_file for TLS")
    auth: AuthConfig | None = Field(None, description="null = no authentication")


class ReceiverConfig(StrictModel):
    """``receiver:`` section."""

    grpc: GrpcConfig = Field(default_factory=GrpcConfig)
