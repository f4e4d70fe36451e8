"""Who we talk to and how long we wait: plain data, validated once."""

from __future__ import annotations

from dataclasses import dataclass, field

from dicomscu.errors import UsageError

DEFAULT_PORT = 104
DEFAULT_CALLING_AE = "GDCMSCU"
DEFAULT_CALLED_AE = "ANY-SCP"
#: Our receive limit, advertised in the A-ASSOCIATE-RQ (Maximum Length sub-item).
DEFAULT_MAX_PDU = 1 << 20


@dataclass(frozen=True)
class Timeouts:
    """Every wait is bounded: a dead or hostile peer costs at most these many seconds.

    connect:     TCP connection establishment.
    association: waiting for A-ASSOCIATE-AC/RJ and A-RELEASE-RP.
    dimse:       waiting for a DIMSE response (C-ECHO-RSP, C-STORE-RSP, ...).
    network:     a peer that stops sending in the middle of a PDU.
    """

    connect: float = 10.0
    association: float = 30.0
    dimse: float = 60.0
    network: float = 30.0

    def __post_init__(self) -> None:
        for name in ("connect", "association", "dimse", "network"):
            value = getattr(self, name)
            if not value > 0:
                raise UsageError(f"the {name} timeout must be a positive number of seconds, not {value!r}")

    @classmethod
    def all(cls, seconds: float) -> "Timeouts":
        """The same limit for every wait (``--timeout``)."""
        return cls(seconds, seconds, seconds, seconds)


def _named(what: str, option: str | None) -> str:
    """How a check's message starts: `what` in words, or nothing when the error names its `option` itself."""
    return "" if option is not None else f"{what} "


def check_ae_title(value: str, what: str = "AE title", *, option: str | None = None) -> str:
    """An AE title is 1-16 characters of the default repertoire, no backslash or control.  With `option`, the
    error names that setting (an options object's field) instead of starting with `what`."""
    stripped = value.strip()
    if not stripped or len(stripped) > 16:
        raise UsageError(f"{_named(what, option)}{value!r} must be 1 to 16 characters", option=option)
    if any(ord(c) < 0x20 or ord(c) > 0x7E or c == "\\" for c in stripped):
        raise UsageError(f"{_named(what, option)}{value!r} may contain only printable ASCII characters, no backslash",
                         option=option)
    return stripped


def check_port(value: int, what: str = "port", *, option: str | None = None) -> int:
    """A TCP port number (1-65535), given as an int.  With `option`, the error names that setting."""
    if isinstance(value, bool) or not isinstance(value, int):  # (from Python: "104" is no port number)
        raise UsageError(f"{_named(what, option)}{value!r} is not a number: give an int between 1 and 65535",
                         option=option)
    if not 1 <= value <= 65535:
        raise UsageError(f"{_named(what, option)}{value} is out of range (1-65535)", option=option)
    return value


@dataclass(frozen=True)
class TLS:
    """TLS settings (PS3.15 B.1): our certificate and key, the CA to trust, verification on or off."""

    cert: str | None = None
    key: str | None = None
    ca: str | None = None
    verify: bool = True

    def __post_init__(self) -> None:
        import os

        for option, path in (("tls_cert", self.cert), ("tls_key", self.key)):
            if path is not None and not os.path.isfile(path):
                raise UsageError(f"{path}: no such file", option=option)
        if self.ca is not None and not os.path.exists(self.ca):
            raise UsageError(f"{self.ca}: no such file or directory", option="tls_ca")
        if self.key and not self.cert:
            raise UsageError("is given without the certificate it belongs to", option="tls_key")
        if self.ca is not None:
            import ssl

            self._load_ca(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))  # not PEM: a usage error, before any traffic

    def _load_ca(self, context) -> None:
        """Trust `ca`: a PEM file of certificates, or a directory of them (OpenSSL's c_rehash layout)."""
        import os
        import ssl

        if self.ca is None:
            return
        try:
            if os.path.isdir(self.ca):
                context.load_verify_locations(capath=self.ca)
            else:
                context.load_verify_locations(cafile=self.ca)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise UsageError(f"{self.ca}: not a PEM certificate file or directory "
                             f"({getattr(exc, 'reason', None) or exc})", option="tls_ca") from None

    def _load_own(self, context) -> None:
        """Present our certificate (and key)."""
        import ssl

        try:
            context.load_cert_chain(self.cert, self.key)
        except (ssl.SSLError, OSError) as exc:
            raise UsageError(f"{self.cert}: cannot load the certificate and key: {exc}", option="tls_cert") from None

    def server_context(self):
        """A server-side ssl.SSLContext: our certificate; clients verified against `ca` when given."""
        import ssl

        if not self.cert:
            raise UsageError("is needed for a TLS server (with its key)", option="tls_cert")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._load_own(context)
        if self.ca:
            self._load_ca(context)
        if self.ca and self.verify:
            context.verify_mode = ssl.CERT_REQUIRED  # PS3.15 B.1: both sides authenticate
        return context

    def context(self):
        """A client-side ssl.SSLContext for these settings: the system's CAs, or `ca` only."""
        import ssl

        if self.ca is None:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        else:  # trust this CA only, not the system's
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificates and host names
            self._load_ca(context)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert:
            self._load_own(context)
        return context


#: Hosts under this name are providers served in memory (:mod:`dicomscu.transport.memory`); ``.invalid``
#: never resolves (RFC 2606), so no real host can be taken for one.
IN_MEMORY_SUFFIX = ".memory.invalid"
#: The largest asynchronous operations window we propose: the responses a peer may owe us then stay far
#: below a socket's receive buffer, so that neither side can block the other's writes.
MAX_WINDOW = 256


@dataclass(frozen=True)
class Peer:
    """A remote DICOM application entity and the settings we use to reach it."""

    host: str
    port: int = DEFAULT_PORT
    called_ae: str = DEFAULT_CALLED_AE
    calling_ae: str = DEFAULT_CALLING_AE
    timeouts: Timeouts = field(default_factory=Timeouts)
    max_pdu: int = DEFAULT_MAX_PDU
    tls: TLS | None = None
    #: C-STOREs that may be outstanding at once on one association (PS3.7 D.3.3.3 asynchronous operations
    #: window).  1, the default, proposes no window: some systems drop an association that proposes one.
    #: More is proposed as asked, on the associations that store only (no other operation would use it), and
    #: used as far as the peer agrees (a peer that does not answer gives 1).
    window: int = 1

    def __post_init__(self) -> None:
        if not self.host:
            raise UsageError("hostname missing: a Peer needs a host", option="host")
        check_port(self.port)
        object.__setattr__(self, "called_ae", check_ae_title(self.called_ae, "called AE title"))
        object.__setattr__(self, "calling_ae", check_ae_title(self.calling_ae, "calling AE title"))
        if self.max_pdu != 0 and not 4096 <= self.max_pdu <= (1 << 26):
            raise UsageError(f"{self.max_pdu} must be 0 (unlimited) or between 4096 and 67108864", option="max_pdu")
        if isinstance(self.window, bool) or not isinstance(self.window, int) or not 1 <= self.window <= MAX_WINDOW:
            raise UsageError(f"{self.window!r} must be a whole number from 1 to {MAX_WINDOW}", option="window")

    def __str__(self) -> str:
        return f"{self.called_ae}@{self.host}:{self.port}"
