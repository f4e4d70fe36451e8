"""Every option of ``dicomscu``, with its help beside it: one table for the parser, ``--help`` and errors.

Each :class:`Option` says how argparse reads it, what ``--help`` says about it,
and which library setting it is (`api`), so that an error the library raises
about ``tls_ca`` reaches the user as ``--tls-ca``.  gdcmscu's options come first,
in gdcmscu's order and sections, then what dicomscu adds.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, TypeVar

from dicomscu.choices import FORMATS, LAYOUTS
from dicomscu.errors import UsageError

#: Help text starts in this column.
HELP_COLUMN = 24


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]
    help: str = ""
    metavar: str = ""
    #: How argparse reads it (action, dest, choices...).
    read: Mapping[str, Any] = field(default_factory=dict)
    #: The library's name for what it sets (DicomscuError.option), if any.
    api: str | None = None
    #: The left column of its help line, when not its flags and metavar; "" when another line covers it.
    label: str | None = None
    #: Turns the text given into the library setting's value (a number...), raising UsageError if it cannot.
    convert: Callable[[str], Any] | None = None

    @property
    def dest(self) -> str:
        """Where argparse keeps what was given."""
        return self.read.get("dest") or [f for f in self.flags if f.startswith("--")][0][2:].replace("-", "_")

    def left(self) -> str:
        if self.label is not None:
            return self.label
        short = [flag for flag in self.flags if not flag.startswith("--")]
        long = [flag for flag in self.flags if flag.startswith("--")]
        text = ("  " + short[0] + " " if short else "     ") + " ".join(long)
        return f"{text} {self.metavar}" if self.metavar else text


def _flag(*flags: str, help: str = "", metavar: str = "", api: str | None = None, label: str | None = None,
          convert: Callable[[str], Any] | None = None, **read: Any) -> Option:
    return Option(tuple(flags), help, metavar, read, api, label, convert)


def _switch(*flags: str, help: str = "", label: str | None = None, api: str | None = None, **read: Any) -> Option:
    return Option(tuple(flags), help, "", {"action": "store_true", **read}, api, label)


def number(text: str) -> int:
    """A count or a port as the command line gives it (decimal digits)."""
    try:
        return int(text, 10)
    except (TypeError, ValueError):
        raise UsageError(f"'{text}' is not a number") from None


def _path(text: str) -> str | None:
    return text or None


def _const(flag: str, dest: str, help: str) -> Option:
    return Option((flag,), help, "", {"dest": dest, "action": "append_const", "const": flag[2:]})


SECTIONS: list[tuple[str, list[Option]]] = [
    ("Options:", [
        _flag("-H", "--hostname", metavar="HOST", help="Hostname.", api="host"),
        _flag("-p", "--port", metavar="PORT", help="Port number.", api="port"),
        _flag("--aetitle", metavar="AE", help="Set calling AE title (default GDCMSCU).", api="calling_ae"),
        _flag("--call", metavar="AE", help="Set called AE title (default ANY-SCP).", api="called_ae"),
    ]),
    ("Mode options:", [
        _const("--echo", "operations", "C-ECHO (default when none)."),
        _const("--store", "operations", "C-STORE."),
        _const("--find", "operations", "C-FIND."),
        _const("--move", "operations", "C-MOVE."),
        _const("--get", "operations", "C-GET."),
    ]),
    ("C-STORE options:", [
        _flag("-i", "--input", metavar="FILE", help="DICOM file or directory to send (repeatable).",
              action="append", default=[]),
        _switch("-r", "--recursive", help="Recursively process (sub-)directories.", api="recursive"),
    ]),
    ("C-FIND options:", [
        _const("--worklist", "models", "C-FIND Modality Worklist model."),
        _const("--patientroot", "models", "C-FIND Patient Root model (default)."),
        _const("--studyroot", "models", "C-FIND Study Root model."),
        _const("--patient", "levels", "Query on patient level (not with --studyroot)."),
        _const("--study", "levels", "Query on study level."),
        _const("--series", "levels", "Query on series level."),
        _const("--image", "levels", "Query on image level."),
        _flag("-k", "--key", metavar="G,E[=VALUE]", api="keys", action="append", default=[],
              help='Search key, e.g. 10,10="A*" or 10,10,"A*"; without a\n'
                   'value (10,20 or 10,20="") a key to return.'),
        _flag("--store-query", metavar="FILE", help="Store the constructed query in FILE.", api="store_query"),
        _switch("--queryhelp", help="Print the keys each query level supports."),
    ]),
    ("C-MOVE/C-GET options:", [
        _flag("-o", "--output", metavar="DIR", help="Directory for retrieved files.", api="output"),
        _flag("--port-scp", metavar="PORT", help="Port for incoming associations (C-MOVE, --commit).",
              api="port_scp", convert=number),
    ]),
    ("General options:", [
        _flag("--root-uid", metavar="UID", help="Root UID (also from the GDCM_ROOT_UID environment variable).",
              api="root_uid"),
        _flag("--resources-path", metavar="P", help="Accepted for gdcmscu compatibility (not needed)."),
        _switch("-V", "--verbose", help="Verbose: warnings, errors and progress information."),
        _switch("-W", "--warning", help="Print warnings (and errors)."),
        _switch("-E", "--error", help="Print errors only."),
        _switch("-D", "--debug", help="Debug: everything, including the association negotiation."),
        _flag("-L", "--log-file", metavar="FILE", help="Write the log to FILE instead of the terminal.",
              api="log_file"),
        _switch("-h", "--help", help="Print this help and exit."),
        _switch("-v", "--version", help="Print version information and exit."),
    ]),
    ("dicomscu options (not in gdcmscu):", [
        _flag("--timeout", metavar="S", type=float, api="timeout",
              help="Limit for every wait, in seconds (default: connect 10,\n"
                   "association 30, DIMSE 60, stalled network read 30)."),
        _flag("--connect-timeout", type=float, label="     --connect-timeout S, --acse-timeout S, --dimse-timeout S",
              help="Set one limit.", api="connect_timeout"),
        _flag("--acse-timeout", type=float, label="", api="acse_timeout"),
        _flag("--dimse-timeout", type=float, label="", api="dimse_timeout"),
        _flag("--max-pdu", metavar="N", help="Largest PDU we accept, in bytes (default 1048576; 0 = no limit).",
              api="max_pdu"),
        _flag("--window", metavar="N", api="window",
              help="--store: up to N C-STOREs outstanding at once, if the peer agrees\n"
                   "(PS3.7 asynchronous operations window; default 1, none proposed)."),
        _flag("--format", metavar="F", choices=FORMATS,
              help="C-FIND output: table (default on a terminal), json (DICOM JSON\n"
                   "model), csv, dump (default when piped)."),
        _flag("--limit", metavar="N", help="Stop after N matches (sends a C-CANCEL).", api="limit", convert=number),
        _flag("--charset", metavar="CS", api="charset",
              help="Specific Character Set of the query (default from the locale,\n"
                   'e.g. ISO_IR 192 for UTF-8; "" for none).'),
        _flag("--layout", metavar="L", choices=LAYOUTS, default="flat", api="layout",
              help="Retrieved files: flat (DIR/<SOPInstanceUID>.dcm, default) or\n"
                   "hierarchical (DIR/<PatientID>/<Study>/<Series>/<SOP>.dcm)."),
        _flag("--move-dest", metavar="AE", help="C-MOVE to another AE (no SCP of ours is started).",
              api="move_destination", convert=str.strip),
        _switch("--accept-all-syntaxes", api="accept_all_syntaxes",
                help="Accept every transfer syntax for retrieved instances (default,\n"
                     "as gdcmscu: Implicit VR Little Endian only)."),
        _switch("--skip-existing", api="skip_existing", help="Find first (QIDO-RS for a URL), then retrieve only instances not\n"
                                        "already in -o DIR."),
        _flag("-j", "--jobs", metavar="N", default="1", api="jobs", convert=number,
              help="C-STORE (files split by size), C-GET or C-MOVE (work split by\n"
                   "series) over N associations in parallel (default 1, as gdcmscu);\n"
                   "STOW-RS and WADO-RS over N connections."),
        _flag("--journal", metavar="FILE", api="journal", convert=_path,
              help="C-STORE: record each instance the peer confirmed in FILE\n"
                   "(SQLite); a re-run skips them (resume after Ctrl-C or a crash)."),
        _switch("--commit", api="commit",
                help="Storage commitment (PS3.4 J): after --store, or alone for files\n"
                     "already sent (FILES, or --from-json answers). The result comes on\n"
                     "our association, or to --port-scp; exit 0 only when every instance\n"
                     "is committed. With --journal a re-run asks only for the rest."),
        _flag("--commit-timeout", metavar="S", type=float, api="commit_timeout",
              help="How long to wait for the storage commitment result (default 60)."),
        _flag("--then", metavar="get|move", choices=("get", "move"),
              help="After --find, retrieve exactly its matches (same options as --get/--move)."),
        _flag("--from-json", metavar="FILE", api="from_json",
              help="--get/--move (or --commit) the answers of an earlier --find --format json\n"
                   "(FILE or - for stdin), e.g. dicomscu --find ... --format json |\n"
                   "jq 'map(select(...))' | dicomscu --get HOST PORT --from-json -"),
        _switch("--decompress", api="decompress",
                help="C-STORE: send compressed files uncompressed (decoders from\n"
                     "pip install 'dicomscu[compressed]'). Without it, a file is\n"
                     "decompressed only when the peer refuses its transfer syntax."),
        _switch("--tls", help="Use TLS (PS3.15); any --tls-* option implies it."),
        _flag("--tls-cert", label="     --tls-cert FILE, --tls-key FILE", api="tls_cert",
              help="Our certificate and private key (PEM), for servers that ask."),
        _flag("--tls-key", label="", api="tls_key"),
        _flag("--tls-ca", metavar="FILE", api="tls_ca",
              help="CA certificate(s) to verify the server with (default: system CAs)."),
        _switch("--tls-no-verify", help="Do not verify the server's certificate (testing only)."),
        _flag("--token-file", metavar="FILE", api="token_file",
              help="DICOMweb: a bearer token (first line of FILE; else DICOMSCU_TOKEN). A peer\n"
                   "given as a URL (https://host/dicom-web) is DICOMweb: --find is QIDO-RS,\n"
                   "--get WADO-RS, --store STOW-RS, --echo a QIDO-RS request."),
        _flag("--config", metavar="FILE", api="config",
              help="Server profiles (default ~/.config/dicomscu/servers.toml):\n"
                   "use @NAME as HOSTNAME (files follow it directly)."),
        _switch("--list-servers", help="Print the server profiles and exit."),
        _flag("--cluster", metavar="ADDR", api="cluster",
              help="--store, --get or --move --move-dest AE on a Dask cluster (tcp://HOST:8786):\n"
                   "files (or series) in shares, each done by a worker with -j associations; a\n"
                   "share lost with its worker runs again, its journal skipping what was done\n"
                   "(pip install 'dicomscu[cluster]'; --journal and -o on storage the workers\n"
                   "share)."),
        _flag("--max-associations-per-peer", metavar="N", api="max_per_peer",
              help="With --cluster: associations open to the peer at once, cluster-wide."),
        _flag("--progress", dest="progress", action="store_true", default=None,
              label="     --progress, --no-progress",
              help="Force the progress bar on or off (default: on a terminal)."),
        _flag("--no-progress", dest="progress", action="store_false", label=""),
    ]),
]
OPTIONS = [option for _, options in SECTIONS for option in options]

#: ``dicomscu serve``'s options, read and described the same way.
SERVE_SECTIONS: list[tuple[str, list[Option]]] = [
    ("Options:", [
        _flag("--port", metavar="PORT", api="port", help="Port to listen on (default {port})."),
        _flag("--bind", metavar="HOST", default="", help="Address to listen on (default: all interfaces)."),
        _flag("--aetitle", metavar="AE", default="DICOMSCU", api="aetitle", help="Our AE title (default DICOMSCU)."),
        _flag("--storage", metavar="DIR", default="dicomscu-storage", api="storage",
              help="Storage directory (default ./dicomscu-storage)."),
        _flag("--dest", metavar="AE=HOST:PORT", action="append", default=[], api="destinations",
              help="A C-MOVE destination, and where a storage commitment result goes\n"
                   "when its requestor has closed its association (repeatable)."),
        _flag("--config", metavar="FILE", help='TOML file with [destinations] AE = "host:port" entries.'),
        _flag("--require-calling", metavar="AE", action="append", default=[], api="require_calling",
              help="Accept only this calling AE title (repeatable)."),
        _switch("--no-overwrite", help="Refuse a SOP Instance already stored (default: replace it)."),
        _flag("--max-size", metavar="SIZE", default="4G", api="max_size",
              help="Largest data set accepted (default 4G; K, M, G suffixes): a larger\n"
                   "one is refused (0xA700) without being held in memory."),
        _flag("--max-associations", metavar="N", default="32", api="max_associations",
              help="Associations established at once (default 32); one more is\n"
                   "rejected (A-ASSOCIATE-RJ, transient: local limit exceeded). A connection\n"
                   "that sends no A-ASSOCIATE-RQ within 10 s, or takes more than 30 s\n"
                   "over the rest of a PDU, is dropped; a TLS handshake has 10 s."),
        _flag("--window", metavar="N", default="64", api="window",
              help="C-STOREs a requestor may have outstanding when it proposes an\n"
                   "asynchronous operations window (default 64; 1: one at a time)."),
        _flag("--http", metavar="PORT", api="http_port",
              help="Also serve DICOMweb on this port: QIDO-RS, WADO-RS and STOW-RS under\n"
                   "http://HOST:PORT/dicom-web, over the same index and storage, under the\n"
                   "same access rules as the DIMSE port (see below)."),
        _flag("--http-bind", metavar="ADDR", default="127.0.0.1", api="http_bind",
              help="Address the DICOMweb side listens on (default 127.0.0.1: this machine\n"
                   "only; 0.0.0.0 or an interface's address to open it)."),
        _flag("--http-token-file", metavar="FILE", api="http_token_file",
              help="Credentials DICOMweb requests must carry, one a line: a bearer token, or\n"
                   "user:password (HTTP Basic). Without it: no authentication (401 otherwise)."),
        _flag("--http-connections-per-client", metavar="N", default="32", api="http_per_client",
              help="HTTP connections one client address may hold at once (default 32);\n"
                   "one more is answered 503 and closed. Request headers must arrive\n"
                   "within 10 s, a body at 8 KiB/s or faster after its first 30 s."),
        _flag("--http-cors", metavar="ORIGIN", action="append", default=[], api="http_cors",
              help="A web page origin (https://viewer.example.org) whose scripts may read the\n"
                   "DICOMweb answers (CORS, repeatable; * for any). Default: pages served from\n"
                   "this machine (localhost, 127.0.0.1). OPTIONS and HEAD are answered."),
        _switch("--read-only", help="Store nothing: C-STORE is answered 0x0124 (not authorized), STOW-RS 403."),
        _switch("--reindex", help="Rebuild the index from the files in DIR, then serve."),
        _flag("--tls-cert", label="     --tls-cert FILE, --tls-key FILE", api="tls_cert",
              help="Serve over TLS (PS3.15) with this certificate and key (PEM)."),
        _flag("--tls-key", label="", api="tls_key"),
        _flag("--tls-ca", metavar="FILE", api="tls_ca", help="Require client certificates signed by this CA."),
        _switch("-V", "--verbose", label="  -V, -D, -L FILE", help="Verbose, debug, log file (as for the client)."),
        _switch("-D", "--debug", label=""),
        _flag("-L", "--log-file", label="", api="log_file"),
        _switch("-h", "--help", label="  -h, --help", help="This help."),
    ]),
]

#: ``dicomscu sample``'s options.
SAMPLE_SECTIONS: list[tuple[str, list[Option]]] = [
    ("Options:", [
        _flag("--patients", metavar="N", api="patients", help="Patients (default 2)."),
        _flag("--studies", metavar="N", api="studies", help="Studies per patient (default 1)."),
        _flag("--series", metavar="N", api="series", help="Series per study (default 2)."),
        _flag("--images", metavar="N", api="images", help="Images per series (default 5)."),
        _flag("--count", metavar="N", api="count",
              help="Images in all instead of --images, dealt round the series in turn."),
        _flag("--modality", metavar="LIST", default="CT,MR", api="modalities",
              help="Modalities of the series of a study, in turn: CT, MR, CR, OT\n(default CT,MR)."),
        _flag("--matrix", metavar="N", api="matrix",
              help="Rows and columns (default by modality: CT 512, MR 256, CR 512, OT 64)."),
        _switch("--implicit", help="Implicit VR Little Endian (default: Explicit VR Little Endian)."),
        _flag("--compress", metavar="LIST", default="", api="compress",
              help="Also write each image in OUTDIR/NAME/ (same UIDs) for each NAME of\n"
                   "deflate, rle, jpeg2000 (rle and jpeg2000 need\n"
                   "pip install 'dicomscu[compressed]')."),
        _flag("--layout", metavar="tree|flat", default="tree", choices=("tree", "flat"),
              help="tree: PID0000/ST01/SE01_CT/IM00001.dcm (default); flat: IM_00000.dcm."),
        _flag("--seed", metavar="N", api="seed", help="Seed of the UIDs, dates and pixels (default 1)."),
        _flag("--first-patient", metavar="N", api="first_patient",
              help="Number of the first patient (default 0: PID0000)."),
        _flag("--root-uid", metavar="UID", api="root",
              help="UID root (also GDCM_ROOT_UID; default 1.2.826.0.1.3680043.10.1137)."),
        _switch("-h", "--help", label="  -h, --help", help="This help."),
    ]),
]


_Settings = TypeVar("_Settings")


def settings(kind: type[_Settings], ns: argparse.Namespace, options: Iterable[Option], **computed: Any) -> _Settings:
    """An operation's options object (:mod:`dicomscu.operations.options`) filled from the command line: each of
    its fields is the setting of the option whose ``api`` names it (converted by the option's `convert`), or
    one of `computed`; the object checks the values itself, and its errors are spelled with our flags."""
    import dataclasses

    options = list(options)
    by_api = {option.api: option for option in options if option.api}
    values: dict[str, Any] = {}
    try:
        for field_ in dataclasses.fields(kind):  # type: ignore[arg-type]
            option = by_api.get(field_.name)
            if field_.name in computed:
                values[field_.name] = computed[field_.name]
            elif option is not None and getattr(ns, option.dest, None) is not None:
                given = getattr(ns, option.dest)
                try:
                    values[field_.name] = option.convert(given) if option.convert is not None else given
                except UsageError as exc:
                    raise UsageError(exc.message, option=field_.name) from None
        return kind(**values)
    except UsageError as exc:
        spelling_of = spelling(options)
        raise UsageError(exc.render(lambda name: spelling_of.get(name, name))) from None


def add_to(parser: argparse.ArgumentParser, options: Iterable[Option]) -> None:
    for option in options:
        parser.add_argument(*option.flags, **option.read)


def render(sections: list[tuple[str, list[Option]]]) -> str:
    """The options part of ``--help``: each section's title, then a line per option (help in one column)."""
    lines: list[str] = []
    for title, options in sections:
        lines.append(title)
        for option in options:
            left = option.left()
            if not left:
                continue  # described on another option's line
            text = option.help.split("\n")
            if len(left) < HELP_COLUMN:
                lines.append(left.ljust(HELP_COLUMN) + text[0])
            else:
                lines += [left, " " * HELP_COLUMN + text[0]]
            lines += [" " * HELP_COLUMN + more for more in text[1:]]
    return "\n".join(lines) + "\n"


def spelling(options: Iterable[Option]) -> dict[str, str]:
    """Library setting name -> the flag the command line spells it with (its long form)."""
    return {option.api: [f for f in option.flags if f.startswith("--")][0] for option in options if option.api}
