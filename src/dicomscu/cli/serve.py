"""``dicomscu serve [options]``: the embedded PACS's command line, parsed into a ServerConfig."""

from __future__ import annotations


import tomllib
from dataclasses import dataclass
from typing import Sequence

from dicomscu.cli.parser import _Parser, _int
from dicomscu.cli.request import DEBUG, VERBOSE, WARNING
from dicomscu.errors import UsageError
from dicomscu.server.access import Credentials
from dicomscu.server.pacs import SERVE_PORT, ServerConfig
from dicomscu.transport.peer import TLS, check_ae_title, check_port

HELP = """\
Usage: dicomscu serve [--port {port}] [--aetitle DICOMSCU] [--storage DIR] [OPTION]...
Run the embedded PACS: Verification, Storage (all SOP classes, files kept as
received), C-FIND, C-MOVE and C-GET in the patient and study root models, backed by
a SQLite index in DIR. Stops cleanly on Ctrl-C or SIGTERM.

  --port PORT            Port to listen on (default {port}).
  --bind HOST            Address to listen on (default: all interfaces).
  --aetitle AE           Our AE title (default DICOMSCU).
  --storage DIR          Storage directory (default ./dicomscu-storage).
  --dest AE=HOST:PORT    A C-MOVE destination (repeatable).
  --config FILE          TOML file with [destinations] AE = "host:port" entries.
  --require-calling AE   Accept only this calling AE title (repeatable).
  --no-overwrite         Refuse a SOP Instance already stored (default: replace it).
  --max-size SIZE        Largest data set accepted (default 4G; K, M, G suffixes): a larger
                         one is refused (0xA700) without being held in memory.
  --max-associations N   Associations established at once (default 32); one more is
                         rejected (A-ASSOCIATE-RJ, transient: local limit exceeded). A connection
                         that sends no A-ASSOCIATE-RQ within 10 s, or takes more than 30 s
                         over the rest of a PDU, is dropped; a TLS handshake has 10 s.
  --http PORT            Also serve DICOMweb on this port: QIDO-RS, WADO-RS and STOW-RS under
                         http://HOST:PORT/dicom-web, over the same index and storage, under the
                         same access rules as the DIMSE port (see below).
  --http-bind ADDR       Address the DICOMweb side listens on (default 127.0.0.1: this machine
                         only; 0.0.0.0 or an interface's address to open it).
  --http-token-file FILE Credentials DICOMweb requests must carry, one a line: a bearer token, or
                         user:password (HTTP Basic). Without it: no authentication (401 otherwise).
  --http-connections-per-client N
                         HTTP connections one client address may hold at once (default 32);
                         one more is answered 503 and closed. Request headers must arrive
                         within 10 s, a body at 8 KiB/s or faster after its first 30 s.
  --http-cors ORIGIN     A web page origin (https://viewer.example.org) whose scripts may read the
                         DICOMweb answers (CORS, repeatable; * for any). Default: pages served from
                         this machine (localhost, 127.0.0.1). OPTIONS and HEAD are answered.
  --read-only            Store nothing: C-STORE is answered 0x0124 (not authorized), STOW-RS 403.
  --reindex              Rebuild the index from the files in DIR, then serve.
  --tls-cert FILE, --tls-key FILE
                         Serve over TLS (PS3.15) with this certificate and key (PEM).
  --tls-ca FILE          Require client certificates signed by this CA.
  -V, -D, -L FILE        Verbose, debug, log file (as for the client).

Access: both protocols apply the same rules. With --tls-cert the DICOMweb side is HTTPS on the
same certificate (never plain HTTP beside a TLS DIMSE port), and with --tls-ca it demands client
certificates too. --read-only and --no-overwrite hold for C-STORE and STOW-RS alike. The calling
AE check (--require-calling) has no HTTP counterpart: with it, --http needs --http-token-file (or
--tls-ca), and serve refuses to start otherwise. DICOMweb on an address other than loopback
without credentials is logged as open to anyone.
""".replace("{port}", str(SERVE_PORT))


@dataclass
class ServeRequest:
    config: ServerConfig
    reindex: bool = False
    log_level: str = WARNING
    log_file: str | None = None
    help: bool = False


def parse_serve(argv: Sequence[str]) -> ServeRequest:
    p = _Parser(prog="dicomscu serve", add_help=False, allow_abbrev=False)
    p.add_argument("--port", default=str(SERVE_PORT))
    p.add_argument("--bind", default="")
    p.add_argument("--aetitle", default="DICOMSCU")
    p.add_argument("--storage", default="dicomscu-storage")
    p.add_argument("--dest", action="append", default=[])
    p.add_argument("--config")
    p.add_argument("--require-calling", action="append", default=[])
    p.add_argument("--no-overwrite", action="store_true")
    p.add_argument("--max-associations", default="32")
    p.add_argument("--max-size", default="4G")
    p.add_argument("--reindex", action="store_true")
    p.add_argument("--http")
    p.add_argument("--http-bind", default="127.0.0.1")
    p.add_argument("--http-token-file")
    p.add_argument("--http-connections-per-client", default="32")
    p.add_argument("--http-cors", action="append", default=[])
    p.add_argument("--read-only", action="store_true")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--tls-ca")
    p.add_argument("-V", "--verbose", action="store_true")
    p.add_argument("-D", "--debug", action="store_true")
    p.add_argument("-L", "--log-file")
    p.add_argument("-h", "--help", action="store_true")
    ns = p.parse_args(list(argv))
    level = DEBUG if ns.debug else VERBOSE if ns.verbose else WARNING
    if ns.help:
        return ServeRequest(ServerConfig(), help=True, log_level=level)
    destinations = _destinations_from_file(ns.config) if ns.config else {}
    for text in ns.dest:
        destinations.update(_destination(text, "--dest"))
    config = ServerConfig(
        port=check_port(_int(ns.port, "--port"), "--port"),
        aetitle=check_ae_title(ns.aetitle, "--aetitle"),
        storage=ns.storage,
        host=ns.bind,
        destinations=destinations,
        require_calling=[check_ae_title(ae, "--require-calling") for ae in ns.require_calling],
        overwrite=not ns.no_overwrite,
        max_size=_size(ns.max_size, "--max-size"),
        max_associations=_positive(_int(ns.max_associations, "--max-associations"), "--max-associations"),
        http_port=check_port(_int(ns.http, "--http"), "--http") if ns.http is not None else None,
        tls=TLS(cert=ns.tls_cert, key=ns.tls_key, ca=ns.tls_ca) if ns.tls_cert or ns.tls_key or ns.tls_ca else None,
        http_bind=ns.http_bind.strip(),
        http_credentials=Credentials.from_file(ns.http_token_file) if ns.http_token_file else Credentials(),
        read_only=ns.read_only,
        http_cors=tuple(origin.strip().rstrip("/") for origin in ns.http_cors),
        http_per_client=_positive(_int(ns.http_connections_per_client, "--http-connections-per-client"),
                                  "--http-connections-per-client"),
    )
    return ServeRequest(config, reindex=ns.reindex, log_level=level, log_file=ns.log_file)


def _size(text: str, option: str) -> int:
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    number, unit = text.strip().upper().rstrip("B"), ""
    if number and number[-1] in units:
        number, unit = number[:-1], number[-1]
    try:
        value = int(number) * units[unit]
    except ValueError:
        raise UsageError(f"{option} {text}: give a size such as 500M or 2G") from None
    if value < 1024:
        raise UsageError(f"{option} {text}: give at least 1K")
    return value


def _positive(value: int, option: str) -> int:
    if not 1 <= value <= 1000:
        raise UsageError(f"{option} {value}: give 1 to 1000")
    return value


def _destination(text: str, where: str) -> dict[str, tuple[str, int]]:
    ae, sep, address = text.partition("=")
    host, colon, port = address.rpartition(":")
    if not sep or not colon or not host:
        raise UsageError(f"{where} '{text}': expected AE=HOST:PORT")
    return {check_ae_title(ae, where): (host, check_port(_int(port, where), where))}


def _destinations_from_file(path: str) -> dict[str, tuple[str, int]]:
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"--config {path}: {exc}") from None
    found: dict[str, tuple[str, int]] = {}
    for ae, address in (data.get("destinations") or {}).items():
        found.update(_destination(f"{ae}={address}", f"--config {path}"))
    return found



