"""gdcmscu's command line, parsed exactly, into one :class:`~dicomscu.cli.request.Request`.

``dicomscu [OPTION]... [OPERATION]... HOSTNAME [PORT] [FILE]...``

Positional rules are gdcmscu's: one argument is the host, two are host and port,
three or more are host, port and files.  Options and positionals may be mixed
in any order.  Everything is validated here, before any network traffic: a bad
value is a :class:`~dicomscu.errors.UsageError` naming the option.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
from typing import Callable, Mapping, Sequence, cast

from dicomscu.choices import LevelName, ModelName
from dicomscu.cli.options import OPTIONS, SAMPLE_SECTIONS, SERVE_SECTIONS, add_to, number, settings, spelling
from dicomscu.cli.request import DEBUG, ERROR, VERBOSE, WARNING, Request
from dicomscu.errors import MissingHost, UsageError
from dicomscu.operations.options import FindOptions, StoreOptions
from dicomscu.operations.retrieval import RetrieveOptions
from dicomscu.operations.target import COMMIT_ON_CLUSTER, COMMIT_OVER_WEB, MOVE_OVER_WEB
from dicomscu.transport.peer import (
    DEFAULT_CALLED_AE,
    DEFAULT_CALLING_AE,
    DEFAULT_MAX_PDU,
    DEFAULT_PORT,
    TLS,
    Peer,
    Timeouts,
    check_port,
)

_ROOT_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
#: Longest root that still leaves room for a unique suffix within the 64-character UID limit.
MAX_ROOT_UID = 60


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own usage errors become ours
        raise UsageError(message + self._did_you_mean(message))

    def _did_you_mean(self, message: str) -> str:
        """' (did you mean --queryhelp?)' when an unrecognized option is close to one of ours."""
        import difflib

        if not message.startswith("unrecognized arguments:"):
            return ""
        known = [option for action in self._actions for option in action.option_strings if option.startswith("--")]
        for word in message.split(":", 1)[1].split():
            if word.startswith("--"):
                close = difflib.get_close_matches(word.split("=")[0], known, n=1, cutoff=0.75)
                if close:
                    return f" (did you mean {close[0]}?)"
        return ""


def _build() -> argparse.ArgumentParser:
    p = _Parser(prog="dicomscu", add_help=False, allow_abbrev=True)  # unambiguous prefixes, as getopt_long
    add_to(p, OPTIONS)
    p.add_argument("positionals", nargs="*")
    return p


#: Library setting -> flag, for error messages: the option table's, gdcmscu's short forms where its users
#: know them, and those of the serve and sample commands.
_SPELLING = {**spelling(option for _, options in SAMPLE_SECTIONS + SERVE_SECTIONS for option in options),
             **spelling(OPTIONS), "log_file": "-L", "output": "-o", "outdir": "OUTDIR"}


def flag_of(option: str) -> str:
    """How the command line spells the library setting `option` (``tls_ca`` -> ``--tls-ca``)."""
    return _SPELLING.get(option, option)


def parse(argv: Sequence[str], environ: Mapping[str, str] | None = None, as_gdcmscu: bool = False,
          warn: Callable[[str], None] | None = None) -> Request:
    """Parse `argv` (without the program name) into a validated :class:`Request`.

    `as_gdcmscu`: invoked under gdcmscu's name, whose getopt warns about an unknown
    option and goes on without it.
    """
    environ = os.environ if environ is None else environ
    parser = _build()
    argv = _as_getopt_reads(parser, list(argv), as_gdcmscu, warn or _stderr)
    if as_gdcmscu:
        ns, unknown = parser.parse_known_intermixed_args(argv)
        for option in unknown:
            (warn or _stderr)(f"gdcmscu: unrecognized option '{option}' (ignored)")
    else:
        ns = parser.parse_intermixed_args(argv)
    request = Request(log_level=_log_level(ns), log_file=ns.log_file)
    if ns.help:
        request.action = "help"
        return request
    if ns.version:
        request.action = "version"
        return request
    if ns.list_servers:
        request.action = "list-servers"
        request.config = ns.config
        return request

    request.model = cast("ModelName | None", _one(ns.models, "query model", "--patientroot, --studyroot or --worklist"))
    request.level = cast("LevelName | None", _one(ns.levels, "query level", "--patient, --study, --series or --image"))
    request.keys = list(ns.key)
    request.store_query = ns.store_query
    request.progress = ns.progress
    request.root_uid = _root_uid(ns.root_uid, environ)
    request.format = ns.format
    request.cluster = ns.cluster
    if ns.max_associations_per_peer is not None:
        request.max_per_peer = _int(ns.max_associations_per_peer, "--max-associations-per-peer")
        if request.max_per_peer < 1 or not request.cluster:
            raise UsageError("--max-associations-per-peer N: at least 1, and with --cluster")
    request.then = ns.then
    request.from_json = ns.from_json
    request.charset = ns.charset
    # each operation's options, from the option table (checked by the objects themselves)
    request.store = settings(StoreOptions, ns, OPTIONS)
    request.find = settings(FindOptions, ns, OPTIONS)
    request.retrieve = settings(RetrieveOptions, ns, OPTIONS, output=ns.output or ".")
    # --commit alone asks as a store's commitment would (port, timeout, journal), with the Transaction UIDs' root
    request.commitment = dataclasses.replace(request.store.commitment, root_uid=request.root_uid)
    if ns.queryhelp:
        request.action = "queryhelp"
        return request

    default = "find" if request.model == "worklist" else "echo"  # gdcmscu: --worklist alone is the worklist query
    request.operation = _one(ns.operations, "operation", "--echo, --store, --find, --move or --get") or default
    if request.store.commit and not ns.operations:
        request.operation = "commit"  # --commit alone: commitment of files already sent
    elif request.store.commit and request.operation != "store":
        raise UsageError(f"--commit follows --store (or stands alone, for files already sent), not --{request.operation}")
    if _web_target(ns):
        return _web_request(request, ns, environ)
    host, port, files = _positionals(ns.positionals, ns.hostname, ns.port)
    profile = None
    if host.startswith("@"):
        from dicomscu.cli import profiles

        profile = profiles.find(host[1:], ns.config, environ)
    setting = (lambda key, default=None: profile.get(key, default)) if profile else (lambda key, default=None: default)
    if profile is not None and setting("url"):
        return _web_request(request, ns, environ, str(setting("url")), files, setting)
    if profile is not None:
        host = str(setting("host"))
        if _bulk(request) and (request.retrieve.move_destination or "move" not in (request.operation, request.then)):
            request.cluster = request.cluster or setting("cluster")  # a profile's cluster: what runs there
    request.files = list(ns.input) + files
    max_pdu = ns.max_pdu if ns.max_pdu is not None else setting("max_pdu")
    window = ns.window if ns.window is not None else setting("window")
    request.peer = Peer(
        host=host,
        port=check_port(_int(str(port if port is not None else setting("port", DEFAULT_PORT)), "port")),
        called_ae=ns.call or setting("call", DEFAULT_CALLED_AE),
        calling_ae=ns.aetitle or setting("aetitle", DEFAULT_CALLING_AE),
        timeouts=_timeouts(ns, setting("timeout")),
        max_pdu=_int(str(max_pdu), "--max-pdu") if max_pdu is not None else DEFAULT_MAX_PDU,
        window=_int(str(window), "--window") if window is not None else 1,
        tls=_tls(ns) or _profile_tls(setting),
    )
    _check_combinations(request)
    return request


def _as_getopt_reads(parser: argparse.ArgumentParser, argv: list[str], as_gdcmscu: bool,
                     warn: Callable[[str], None]) -> list[str]:
    """`argv` rewritten so that argparse reads it as gdcmscu's getopt_long does: an option that takes a
    value takes the next argument whatever it looks like (``--call -X`` calls the AE ``-X``); under
    gdcmscu's name an ambiguous abbreviation is warned about in getopt's words and dropped."""
    takes_value = {option for action in parser._actions if action.option_strings and action.nargs is None
                   and not isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction,
                                               argparse._StoreConstAction, argparse._AppendConstAction,
                                               argparse._CountAction))
                   for option in action.option_strings}
    longs = list(dict.fromkeys(option for action in parser._actions for option in action.option_strings
                               if option.startswith("--")))  # in the option table's order, as getopt lists them
    out: list[str] = []
    position = 0
    while position < len(argv):
        token = argv[position]
        position += 1
        if token == "--":
            out += argv[position - 1:]
            break
        if token.split("=", 1)[0] == "--token":  # not an abbreviation of --token-file: a secret, never echoed
            raise UsageError("--token: a token is never taken from the command line (ps and the shell's history "
                             "would show it): put it in a file for --token-file FILE, or in DICOMSCU_TOKEN "
                             "(the value given is not repeated here)")
        name = token
        if token.startswith("--") and "=" not in token and token not in longs:
            matches = [option for option in longs if option.startswith(token)]
            if len(matches) > 1 and as_gdcmscu:
                warn(f"gdcmscu: option '{token}' is ambiguous; possibilities: "
                     + " ".join(f"'{option}'" for option in matches))
                continue
            name = matches[0] if len(matches) == 1 else token
        if name in takes_value and position < len(argv) and argv[position].startswith("-") and argv[position] != "-":
            value = argv[position]
            position += 1
            out.append(f"{name}={value}" if name.startswith("--") else f"{name}{value}")
            continue
        out.append(token)
    return out


def _web_target(ns: argparse.Namespace) -> bool:
    from dicomscu.web import is_url

    first = ns.positionals[0] if ns.positionals else ns.hostname
    return bool(first) and is_url(first)


def _web_request(request: Request, ns: argparse.Namespace, environ, url: str | None = None,
                 files: list[str] | None = None, setting=None) -> Request:
    """A peer given as a URL: DICOMweb, every other option keeping its meaning."""
    from dicomscu.web import is_url
    from dicomscu.web.service import WebPeer

    if url is None and ns.hostname and is_url(ns.hostname):
        url, files = ns.hostname, list(ns.positionals)
    elif url is None:
        url, files = ns.positionals[0], list(ns.positionals[1:])
    if ns.port is not None:
        raise UsageError("a DICOMweb URL carries its own port: drop -p/--port")
    if ns.window is not None:
        raise UsageError("--window is a DIMSE association's (C-STOREs outstanding at once): with a DICOMweb URL, "
                         "-j N sends N STOW-RS requests at once")
    if ns.max_pdu is not None:
        raise UsageError("--max-pdu is a DIMSE association's: a DICOMweb URL has no PDUs (drop it)")
    token = _token(ns.token_file, environ) or (setting("token") if setting else None)
    request.files = list(ns.input) + list(files or [])
    request.web = WebPeer.parse(url, token=token, tls=_tls(ns) or (_profile_tls(setting) if setting else None),
                                timeouts=_timeouts(ns, setting("timeout") if setting else None))
    if request.store.commit:
        raise UsageError(COMMIT_OVER_WEB)
    if request.operation == "move":
        raise UsageError(MOVE_OVER_WEB)
    if request.then == "move":
        raise UsageError("--then move needs a DIMSE peer: use --then get with a URL")
    if request.model == "worklist" and not request.keys:  # a UPS-RS search: the UPS's own attributes
        from dicomscu.query.model import UPS_DEFAULT_KEYS

        request.keys = list(UPS_DEFAULT_KEYS)
    _check_combinations(request)
    return request


def _token(path: str | None, environ) -> str | None:
    """The bearer token: --token-file's first line, or DICOMSCU_TOKEN (never echoed anywhere)."""
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                token = handle.readline().strip()
        except OSError as exc:
            raise UsageError(f"{path}: cannot read it: {exc.strerror or exc}", option="token_file") from None
        if not token:
            raise UsageError(f"{path}: the file holds no token", option="token_file")
        return token
    return environ.get("DICOMSCU_TOKEN") or None


def _positionals(values: list[str], hostname: str | None, port: str | None) -> tuple[str, str | None, list[str]]:
    """(host, port text or None, files) by gdcmscu's rules; after @PROFILE every argument is a file."""
    host = hostname
    files: list[str] = []
    if values and values[0].startswith("@"):
        return values[0], port, values[1:]
    if len(values) >= 1:
        host = values[0]
    if len(values) >= 2:
        port = values[1]
    if len(values) >= 3:
        files = values[2:]
    if not host:
        raise MissingHost("hostname missing: dicomscu [OPTION]... [OPERATION]... HOSTNAME [PORT] [FILE]...")
    if port is not None:
        check_port(_int(port, "port"))
    return host, port, files


def _int(value: str, what: str) -> int:
    try:
        return number(value)
    except UsageError as exc:
        raise UsageError(f"{what}: {exc.message}") from None


def _one(values: list[str] | None, what: str, choices: str) -> str | None:
    distinct = list(dict.fromkeys(values or []))
    if len(distinct) > 1:
        raise UsageError(f"choose one {what} ({choices}), not {' and '.join('--' + v for v in distinct)}")
    return distinct[0] if distinct else None


def _log_level(ns: argparse.Namespace) -> str:
    if ns.debug:
        return DEBUG
    if ns.verbose:
        return VERBOSE
    if ns.error and not ns.warning:
        return ERROR
    return WARNING


def _root_uid(option: str | None, environ) -> str | None:
    value, source = option, "--root-uid"
    if value is None and environ.get("GDCM_ROOT_UID"):
        value, source = environ["GDCM_ROOT_UID"], "GDCM_ROOT_UID"
    if value is None:
        return None
    if not _ROOT_UID.match(value) or len(value) > MAX_ROOT_UID:
        raise UsageError(
            f"{source}: '{value}' is not a valid root UID (digits and dots, no leading zeros, "
            f"at most {MAX_ROOT_UID} characters)"
        )
    return value


def _timeouts(ns: argparse.Namespace, profile_timeout: float | None = None) -> Timeouts:
    every = ns.timeout if ns.timeout is not None else profile_timeout
    base = Timeouts.all(float(every)) if every is not None else Timeouts()
    return Timeouts(
        connect=ns.connect_timeout if ns.connect_timeout is not None else base.connect,
        association=ns.acse_timeout if ns.acse_timeout is not None else base.association,
        dimse=ns.dimse_timeout if ns.dimse_timeout is not None else base.dimse,
        network=base.network,
    )


def _tls(ns: argparse.Namespace) -> TLS | None:
    wanted = ns.tls or ns.tls_cert or ns.tls_key or ns.tls_ca or ns.tls_no_verify
    if not wanted:
        return None
    return TLS(cert=ns.tls_cert, key=ns.tls_key, ca=ns.tls_ca, verify=not ns.tls_no_verify)


def _profile_tls(setting) -> TLS | None:
    if not (setting("tls") or setting("tls_ca") or setting("tls_cert") or setting("tls_key")):
        return None
    return TLS(cert=setting("tls_cert"), key=setting("tls_key"), ca=setting("tls_ca"),
               verify=not setting("tls_no_verify", False))


def _bulk(request: Request) -> bool:
    """Store or retrieve: what --cluster runs."""
    return request.operation in ("store", "get", "move") or request.then is not None


def _check_combinations(request: Request) -> None:
    if request.cluster and not _bulk(request):
        raise UsageError("--cluster runs --store, --get and --move (also --find ... --then) on a Dask cluster")
    if request.cluster and "move" in (request.operation, request.then) and request.retrieve.move_destination is None:
        raise UsageError("--move --cluster needs --move-dest AE (a destination the server knows): the workers "
                         "cannot all listen as one move destination; or use --get")
    if request.cluster and request.web is not None:
        raise UsageError("--cluster works with a DIMSE peer (HOST PORT), not a DICOMweb URL: for DICOMweb, "
                         "-j N sends N requests at once")
    if request.model == "studyroot" and request.level == "patient":
        raise UsageError("--patient cannot be used with --studyroot (the study root model has no patient level)")
    if request.then and request.operation != "find":
        raise UsageError("--then get|move follows a --find")
    if request.from_json and request.operation not in ("get", "move", "commit"):
        raise UsageError("--from-json FILE feeds --get, --move or --commit")
    if request.operation == "store" and not request.files:
        raise UsageError("--store needs files: dicomscu --store HOST PORT FILE... (or -i FILE)")
    if request.operation == "commit" and not (request.files or request.from_json):
        raise UsageError("--commit needs the instances: dicomscu --commit HOST PORT FILE... (the files sent), or "
                         "--from-json FILE (answers of an image-level --find --format json)")
    if request.operation == "commit" and request.files and request.from_json:
        raise UsageError("--commit takes FILES or --from-json, not both")
    if request.store.commit and request.cluster:
        raise UsageError(COMMIT_ON_CLUSTER)
    if request.operation not in ("store", "commit") and request.files:
        raise UsageError(
            f"files are only sent with --store (got {len(request.files)} file argument(s) with --{request.operation})"
        )


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)
