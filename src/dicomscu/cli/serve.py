"""``dicomscu serve [options]``: the embedded PACS's command line, parsed into a ServerConfig."""

from __future__ import annotations


import tomllib
from dataclasses import dataclass
from typing import Sequence

from dicomscu.cli.options import SERVE_SECTIONS, add_to, render
from dicomscu.cli.parser import _Parser, _int
from dicomscu.cli.request import DEBUG, VERBOSE, WARNING
from dicomscu.errors import UsageError
from dicomscu.server.access import Credentials
from dicomscu.server import SERVE_PORT
from dicomscu.server.pacs import ServerConfig
from dicomscu.transport.peer import TLS, check_ae_title, check_port

HELP = """\
Usage: dicomscu serve [--port {port}] [--aetitle DICOMSCU] [--storage DIR] [OPTION]...
Run the embedded PACS: Verification, Storage (all SOP classes, files kept as
received), C-FIND, C-MOVE and C-GET in the patient and study root models, and
Storage Commitment (push model), backed by a SQLite index in DIR. Stops cleanly
on Ctrl-C or SIGTERM.

""".replace("{port}", str(SERVE_PORT)) + render(SERVE_SECTIONS).replace("{port}", str(SERVE_PORT)) + """
Access: both protocols apply the same rules. With --tls-cert the DICOMweb side is HTTPS on the
same certificate (never plain HTTP beside a TLS DIMSE port), and with --tls-ca it demands client
certificates too. --read-only and --no-overwrite hold for C-STORE and STOW-RS alike. The calling
AE check (--require-calling) has no HTTP counterpart: with it, --http needs --http-token-file (or
--tls-ca), and serve refuses to start otherwise. DICOMweb on an address other than loopback
without credentials is logged as open to anyone.
"""


SERVE_OPTIONS = [option for _, options in SERVE_SECTIONS for option in options]


@dataclass
class ServeRequest:
    config: ServerConfig
    reindex: bool = False
    log_level: str = WARNING
    log_file: str | None = None
    help: bool = False


def parse_serve(argv: Sequence[str]) -> ServeRequest:
    p = _Parser(prog="dicomscu serve", add_help=False, allow_abbrev=False)
    add_to(p, SERVE_OPTIONS)
    p.set_defaults(port=str(SERVE_PORT))
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
        window=_positive(_int(ns.window, "--window"), "--window"),
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



