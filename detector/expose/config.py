"""Config of the HTTP endpoint (``http:``): /metrics, /healthz, /readyz, /api/v1/alerts."""

from __future__ import annotations

from pydantic import Field, field_validator

from detector.config.types import Duration, Endpoint, StrictModel


class HttpTlsConfig(StrictModel):
    """HTTPS on the endpoint (stdlib :class:`ssl.SSLContext`, TLS >= 1.2); mutual TLS when
    ``client_ca_file`` is set. The files are re-read on SIGHUP (new connections use them)."""

    cert_file: str = Field(..., description="PEM server certificate (chain)")
    key_file: str = Field(..., description="PEM private key of cert_file")
    client_ca_file: str | None = Field(
        None, description="PEM CA bundle; when set, clients must present a certificate it signed (mTLS)"
    )


class BasicAuthConfig(StrictModel):
    """HTTP basic authentication (RFC 7617) of /metrics, /api/v1/alerts and /.

    Prometheus scrapes with ``basic_auth: {username, password_file}``. Use it
    together with ``tls`` (basic auth sends the password in clear otherwise).
    """

    username: str = Field(..., min_length=1, description="expected user name")
    password_file: str = Field(
        ..., description="file holding the expected password (surrounding whitespace stripped); re-read on SIGHUP; never logged"
    )
    realm: str = Field("otel-anomaly", description="realm named in the WWW-Authenticate header of a 401")
    protect_probes: bool = Field(
        False,
        description="also require credentials on /healthz and /readyz (kubelet probes cannot send them: keep false there)",
    )

    @field_validator("username")
    @classmethod
    def _valid_user_id(cls, value: str) -> str:
        # RFC 7617 §2: "a user-id containing a colon character is invalid" (the first colon
        # separates user-id and password), and control characters are not allowed either
        if ":" in value:
            raise ValueError("must not contain a colon (RFC 7617: the first colon separates user and password)")
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
            raise ValueError("must not contain control characters (RFC 7617)")
        return value


class HttpConfig(StrictModel):
    """``http:`` section."""

    endpoint: Endpoint = Field("0.0.0.0:9464", description="host:port of /metrics and the JSON API")
    tls: HttpTlsConfig | None = Field(None, description="null = plain HTTP; set cert_file/key_file for HTTPS")
    basic_auth: BasicAuthConfig | None = Field(None, description="null = no authentication")
    read_timeout: Duration = Field(
        "30s", description="a connection whose TLS handshake, request line and headers have not all arrived this long after it opened is closed"
    )
