"""The ``dicomscu`` program: parse, run one operation, print, return the exit code.

This is the only place that joins the layers: :mod:`dicomscu.cli` gives a
:class:`~dicomscu.cli.request.Request`, :mod:`dicomscu.operations` does the work,
:mod:`dicomscu.output` says what happened.  Every anticipated failure is a
:class:`~dicomscu.errors.DicomscuError`, printed as one line; anything else is a
bug, and is still reported in one line (with the traceback only under -D).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from contextlib import nullcontext
from typing import Sequence

from dicomscu import __version__
from dicomscu.cli.environment import Environment
from dicomscu.cli.parser import flag_of, parse
from dicomscu.cli.request import DEBUG, VERBOSE, Request
from dicomscu.errors import DicomscuError, MissingHost, Stopped, UsageError
from dicomscu.output import logs
from dicomscu.transport import interrupts

LOGGER = logging.getLogger("dicomscu")


def main_as_gdcmscu(argv: Sequence[str], env: Environment | None = None) -> int:
    """Installed under gdcmscu's name (a link), behave as gdcmscu does where scripts can see it:
    nothing on stdout but the help, the version and the query help (find answers, in gdcmscu's dump
    layout, and every message go to stderr), the help on stdout when no host is given, exit status 0 or 1,
    unknown options warned about and ignored."""
    env = env or Environment()
    code = main(argv, as_gdcmscu=True, env=env)
    return 0 if code == 0 else 1


def main(argv: Sequence[str] | None = None, as_gdcmscu: bool = False, env: Environment | None = None) -> int:
    """The command line: `argv` without the program name; `env` the streams and variables it uses."""
    if argv is None and os.path.basename(sys.argv[0]) == "gdcmscu":
        return main_as_gdcmscu(sys.argv[1:], env)
    embedded = env is not None  # called with its own environment (a test, a program): signals stay theirs
    env = env or Environment()
    argv = sys.argv[1:] if argv is None else list(argv)
    _skip_unused_imports()
    request: Request | None = None
    if argv[:1] != ["serve"] and not embedded:  # serve drains its associations on SIGTERM itself
        _stop_on_signals()
    try:
        if argv[:1] in (["serve"], ["sample"], ["demo"]):
            interrupts.end_start_up()  # (each stops cleanly from its first instruction)
        if argv[:1] == ["serve"]:
            return run_serve(argv[1:], env)
        if argv[:1] == ["sample"]:
            return run_sample(argv[1:], env)
        if argv[:1] == ["demo"]:
            from dicomscu.demo import run_demo

            return run_demo(argv[1:])
        request = parse(argv, env.environ, as_gdcmscu=as_gdcmscu, warn=env.err)
        if as_gdcmscu:
            request.format = request.format or "dump"  # gdcmscu has no other layout
        logs.setup(request.log_level, request.log_file, env.stderr)
        if as_gdcmscu and request.action not in _STDOUT_ACTIONS:
            if request.log_file:  # gdcmscu's -L takes all its trace, find answers included
                with open(request.log_file, "a", encoding="utf-8") as trace:
                    return run(request, env.with_stdout(trace))
            return run(request, env.with_stdout(env.stderr))  # gdcmscu prints its work on stderr
        return run(request, env)
    except DicomscuError as exc:
        if as_gdcmscu and isinstance(exc, MissingHost):
            from dicomscu.cli.help import HELP

            env.out(HELP, end="")  # gdcmscu prints its help, on stdout, and fails
            return 1
        interrupted = interrupts.take_pending()  # a Ctrl-C during start-up outranks what it cut short
        if isinstance(interrupted, KeyboardInterrupt):
            exc = Stopped(interrupted)
        _error(env, exc.render(flag_of))
        if isinstance(exc, UsageError):
            command = "dicomscu " + argv[0] if argv[:1] in (["serve"], ["sample"]) else "dicomscu"
            env.err(f"Try '{command} --help' for more information.")
        return exc.exit_code
    except KeyboardInterrupt as exc:
        interrupts.acknowledge()
        stopped = Stopped(exc)
        _error(env, str(stopped))
        return stopped.exit_code
    except BrokenPipeError:  # the reader went away (| head): stop quietly, as other tools do
        if env.stdout is sys.stdout:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:  # a bug: one line, details under -D
        if request is not None and request.log_level == DEBUG:
            LOGGER.debug("internal error", exc_info=True)
            import traceback

            traceback.print_exc(file=env.stderr)
        _error(env, f"internal error: {type(exc).__name__}: {exc} (please report it; run with -D for details)")
        return 1


#: What gdcmscu prints on stdout (everything else of it goes to stderr).
_STDOUT_ACTIONS = ("help", "version", "queryhelp")


def _stop_on_signals() -> None:
    """Ctrl-C (exit 130) and SIGTERM (exit 143) stop every operation (C-CANCEL, A-ABORT, JSON closed),
    raised where no received PDU is half-read (see transport/interrupts.py).  (The installed command's
    launcher has installed them already; ``dicomscu.app.main`` called otherwise gets them here.)"""
    interrupts.handle_signals()


def _skip_unused_imports() -> None:
    """Keep pydicom from importing `requests` in this process (a quarter second of start-up).

    pydicom imports it only to download its own test files, and falls back to
    urllib when it is missing; a command-line run never downloads anything.
    """
    if "requests" not in sys.modules:
        sys.modules["requests"] = None  # type: ignore[assignment]


def run(request: Request, env: Environment) -> int:
    if request.action == "help":
        from dicomscu.cli.help import HELP

        env.out(HELP, end="")
        return 0
    if request.action == "version":
        env.out(version_text())
        return 0
    if request.action == "queryhelp":
        return run_queryhelp(request, env)
    if request.action == "list-servers":
        from dicomscu.cli.profiles import listing

        env.out(listing(request.config, env.environ), end="")
        return 0
    runners = {"echo": run_echo, "store": run_store, "find": run_find, "move": run_retrieve, "get": run_retrieve,
               "commit": run_commit}
    try:
        try:
            interrupts.end_start_up()  # a Ctrl-C during start-up is raised here, where it is reported in full
            return runners[request.operation](request, env)
        except Exception as raised:
            interrupted = interrupts.take_pending()
            if isinstance(interrupted, KeyboardInterrupt) and not isinstance(raised, DicomscuError):
                # a Ctrl-C that Python turned into another error on its way (raised inside a class being made
                # by an import: "RuntimeError: Error calling __set_name__"): it is the interrupt
                raise interrupted from raised
            raise
    except (DicomscuError, KeyboardInterrupt) as raised:
        exc = Stopped(raised) if isinstance(raised, KeyboardInterrupt) else raised
        if request.format == "json" and request.operation in ("echo", "get", "move", "commit"):
            # scripts parse stdout: a failure is a JSON document too (find keeps its answer array)
            from dicomscu.output import text

            operation = "storage commitment" if request.operation == "commit" else "C-" + request.operation.upper()
            report = getattr(exc, "report", None)
            document = (text.retrieve_json(report, request.retrieve.output, exc) if report is not None
                        else text.failure_json(operation, _target_or_none(request), exc))
            env.out(_json(document))
        elif request.format == "json" and request.operation == "find" and not request.answers_opened:
            env.out("[]")  # stopped before the answer array was opened: it is empty, and still a document
        raise


def run_queryhelp(request: Request, env: Environment) -> int:
    from dicomscu.query.model import MODELS, help_text

    names = [request.model] if request.model else ["patientroot", "studyroot"]
    env.out("\n".join(help_text(MODELS[name]) for name in names), end="")
    return 0


def run_find(request: Request, env: Environment) -> int:
    from dicomscu.output import text
    from dicomscu.output.answers import writer_for
    from dicomscu.query.build import build_query
    from dicomscu.query.files import write_query

    name = request.format or ("table" if env.stdout_isatty else "dump")
    writer = None
    try:
        with interrupts.deferred():  # the JSON array is opened, and said to be, as one step...
            if name == "json":
                writer = writer_for(name, [], stream=env.stdout)
                request.answers_opened = True
        # ...inside the try: an interrupt raised as that step ends still closes the array (finally)
        # the level's own unique key only where dicomscu needs it: gdcmscu's identifier otherwise
        needs_level_key = bool(request.then) or request.format in ("json", "csv")
        query = build_query(request.model, request.level, request.keys, charset=request.charset,
                            environ=env.environ, level_key=needs_level_key)
        if request.store_query:
            write_query(query, request.store_query, request.root_uid)
        LOGGER.info("C-FIND identifier:\n%s", query.dataset)
        if writer is None:
            writer = writer_for(name, query.columns, verbose=request.log_level in (VERBOSE, DEBUG),
                                stream=env.stdout)
        matches = []  # --then: the answers to retrieve (held: each is a few unique keys)

        def on_answer(answer) -> None:
            writer.add(answer)
            if request.then:
                matches.append(answer.dataset())

        report = _target(request).find(query, request.find, on_answer=on_answer, raw=True)
    finally:
        if writer is not None:
            writer.close()
    env.err(text.find_summary(report))
    if not request.then:
        return 0
    from dicomscu.operations.retrieve import identifiers_from_answers

    # the retrieval of exactly those matches, as a request of its own (the find's is left as it was); stdout
    # holds the answers: the retrieval's summary goes to stderr
    retrieval = dataclasses.replace(request, operation=request.then, format=None, then=None)
    return run_retrieve(retrieval, env.with_stdout(env.stderr), identifiers_from_answers(matches, query))


def version_text() -> str:
    import pydicom

    return f"dicomscu {__version__} (pydicom {pydicom.__version__}; DICOM upper layer: dicomscu.protocol)"


def run_echo(request: Request, env: Environment) -> int:
    from dicomscu.output import text

    result = _target(request).echo()
    if request.format == "json":
        env.out(_json(text.echo_json(result)))
    else:
        env.out(text.echo_line(result))
    return 0


def run_store(request: Request, env: Environment) -> int:
    from dicomscu.operations.results import ALREADY, FAILED, OK, SKIPPED
    from dicomscu.output import text

    verbose = request.log_level in (VERBOSE, DEBUG)
    show_bar = request.progress if request.progress is not None else env.stderr_isatty
    bar = None
    if show_bar:
        from dicomscu.output.progress import StoreProgress

        bar = StoreProgress(env.stderr)

    def say(line: str, stream) -> None:
        if bar is not None:
            bar.print(line)
        else:
            stream.write(line + "\n")
            stream.flush()

    def on_plan(plan) -> None:
        LOGGER.info("%d DICOM file(s), %s, in %d association(s)", plan.files, text.human_size(plan.bytes),
                    len(plan.groups))
        if bar is not None:
            bar.start(plan.files, plan.bytes)

    as_json = text.StoreJsonStream(_target(request).peer, env.stdout) if request.format == "json" else None

    def on_result(result) -> None:
        if bar is not None and result.outcome != SKIPPED:
            bar.advance(result.size)
        if as_json is not None:  # streamed: memory stays flat in the number of files
            as_json.add(result)
        elif result.outcome in (FAILED, SKIPPED):
            say(f"dicomscu: {text.file_line(result)}", env.stderr)
        elif result.outcome == OK and result.message:  # stored, with something the user should know
            say(f"dicomscu: warning: {text.file_line(result)}", env.stderr)
        elif (result.outcome != OK and result.outcome != ALREADY) or verbose:
            say(text.file_line(result), env.stdout)

    try:
        with bar if bar is not None else nullcontext():
            report = _target(request).store(request.files, request.store, on_plan=on_plan, on_result=on_result)
    except (DicomscuError, KeyboardInterrupt) as exc:
        if as_json is not None:
            as_json.fail(Stopped(exc) if isinstance(exc, KeyboardInterrupt) else exc)
        raise
    if report.error is not None:
        _error(env, report.error.render(flag_of))
    if as_json is not None:
        as_json.end(report)
    else:
        env.out(text.store_summary(report))
        if report.commitment is not None:
            _say_commitment(report.commitment, env, as_part_of_store=True)
    return text.exit_code(report)


def run_commit(request: Request, env: Environment) -> int:
    """``--commit`` alone: ask the peer to commit instances already sent (files, or --from-json answers)."""
    from dicomscu.operations.commit import commit, references_in
    from dicomscu.operations.commitment import Reference
    from dicomscu.output import text
    from dicomscu.printable import printable

    problems = 0

    def on_problem(path: str, reason: str) -> None:
        nonlocal problems
        problems += 1
        env.err(f"dicomscu: {printable(path)}: skipped: {printable(reason)}")

    if request.from_json:
        references = []
        for number, answer in enumerate(_read_json_answers(request.from_json, env), 1):
            sop_class, sop_instance = answer.get("SOPClassUID"), answer.get("SOPInstanceUID")
            if not sop_instance or not sop_class:
                raise UsageError(f"--from-json {request.from_json}: answer {number} has no SOPClassUID and "
                                 "SOPInstanceUID (0008,0016/0018): use the answers of an --image level --find with "
                                 "-k 8,16 -k 8,18")
            references.append(Reference(str(sop_class), str(sop_instance)))
    else:
        references = list(references_in(request.files, request.store.recursive, on_problem))
    report = commit(request.target, references, request.commitment)
    if report.error is not None:
        _error(env, report.error.render(flag_of))
    if request.format == "json":
        document = text.commit_json(report)
        document["skipped_files"] = problems
        if problems and document["exit_code"] == 0:
            document["exit_code"] = 1
        env.out(_json(document))
    else:
        _say_commitment(report, env)
    code = text.exit_code(report)
    return code if code or not problems else 1


def _say_commitment(report, env: Environment, as_part_of_store: bool = False) -> None:
    from dicomscu.output import text

    if report.error is not None and as_part_of_store:  # (alone, the error line is printed first, as for others)
        _error(env, report.error.render(flag_of))
    for line in text.commit_failure_lines(report):
        env.err(f"dicomscu: {line}")
    env.out(text.commit_summary(report))
    if report.unanswered and not report.refused and report.error is None:
        env.err("dicomscu: hint: some archives send the result on an association of their own: give --port-scp "
                "PORT (and make our AE title known to the archive at that port), or a longer --commit-timeout")


def run_retrieve(request: Request, env: Environment, identifiers=None) -> int:
    from dicomscu.files.instances import prepare_directory
    from dicomscu.operations.retrieval_plan import plan_retrieval
    from dicomscu.output import text

    target = _target(request)
    answers = _read_json_answers(request.from_json, env) if request.from_json else None
    plan = plan_retrieval(target, request.operation, request.model, request.level, request.keys,
                          charset=request.charset, environ=env.environ, identifiers=identifiers, answers=answers,
                          light=not (request.store_query or request.retrieve.skip_existing))
    if request.store_query and identifiers is None and plan.query is not None:  # gdcmscu writes it for --move too
        from dicomscu.query.files import write_query

        try:  # what is sent; a retrieval refused here sends nothing, and the file is the query as gdcmscu writes it
            sent = plan.sent()
        except UsageError:
            write_query(plan.query, request.store_query, request.root_uid)
            raise
        write_query(sent, request.store_query, request.root_uid)
    query, identifiers = plan.query, plan.identifiers
    options = dataclasses.replace(request.retrieve, output=prepare_directory(request.retrieve.output))
    show_bar = request.progress if request.progress is not None else env.stderr_isatty
    bar = None
    if show_bar:
        from dicomscu.output.progress import RetrieveProgress

        bar = RetrieveProgress(f"C-{request.operation.upper()}", env.stderr)
    progress = bar.update if bar else None
    with bar if bar is not None else nullcontext():
        report = target.retrieve(request.operation, query, options, identifiers, progress)
    for problem in report.write_errors:
        _error(env, f"not written: {problem}")
    if request.format == "json":
        env.out(_json(text.retrieve_json(report, options.output)))
    else:
        env.out(text.retrieve_summary(report, options.output))
    return text.exit_code(report)


def _target(request: Request):
    """Where the operation goes (:mod:`dicomscu.operations.target`): what kind of peer it is stays there."""
    from dicomscu.operations.target import target_for

    return target_for(request.peer, request.web, request.cluster, request.max_per_peer)


def _target_or_none(request: Request):
    """The peer a failure document names (None when the command line named none)."""
    return request.web if request.web is not None else request.peer


def run_sample(argv: list[str], env: Environment) -> int:
    from dicomscu.cli.sample import HELP, parse_sample
    from dicomscu.output import text
    from dicomscu.sample import write_sample

    request = parse_sample(argv, env.environ)
    if request.help:
        env.out(HELP, end="")
        return 0
    try:
        report = write_sample(request.outdir, request.target_spec, request.compress)
    except OSError as exc:
        raise UsageError(f"sample: cannot write to {request.outdir}: {exc.strerror or exc}") from None
    env.out(f"dicomscu sample: wrote {len(report.files)} file(s) for {report.patients} patient(s), "
            f"{report.studies} study(ies), {report.series} series ({text.human_size(report.bytes)}) "
            f"to {request.outdir} in {report.seconds:.1f} s")
    return 0


def run_serve(argv: list[str], env: Environment) -> int:
    import signal
    import threading

    from dicomscu.cli.serve import HELP, parse_serve
    from dicomscu.server.pacs import Pacs

    request = parse_serve(argv)
    logs.setup(request.log_level, request.log_file, env.stderr)
    if request.help:
        env.out(HELP, end="")
        return 0
    pacs = Pacs(request.config)
    if request.reindex:
        result = pacs.index.reindex(pacs.storage)
        for path in result.dropped:
            env.out(f"reindex: removed {path}: an older copy of an instance stored again since")
        for problem in result.unreadable:
            env.out(f"reindex: not indexed (left in place): {problem}")
        env.out(f"reindexed {result.indexed} instance(s) from {pacs.storage}"
                + (f", {len(result.dropped)} duplicate file(s) removed" if result.dropped else "")
                + (f", {len(result.unreadable)} unreadable" if result.unreadable else ""))
    pacs.start()
    config = request.config
    scheme = "https" if config.tls else "http"
    web = (f", DICOMweb on {scheme}://{config.http_bind or '0.0.0.0'}:{pacs.http_port}/dicom-web"
           + (" (credentials required)" if config.http_credentials else "")) if config.http_port else ""
    env.out(f"dicomscu serve: {config.aetitle} listening on port {config.port}{web}, storage {pacs.storage} "
            f"({pacs.index.count()} instance(s)); Ctrl-C to stop")
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        while not stopping.wait(0.5):
            continue
    except KeyboardInterrupt:
        pass
    finally:
        pacs.stop()
    env.out("dicomscu serve: stopped")
    return 0


def _read_json_answers(path: str, env: Environment):
    """Datasets from a DICOM JSON array (``--format json`` output), from a file or stdin."""
    from pydicom.dataset import Dataset

    try:
        if path == "-":
            text = env.stdin.read()
        else:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        import json

        items = json.loads(text)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--from-json {path}: {exc}") from None
    if not isinstance(items, list):
        raise UsageError(f"--from-json {path}: expected a JSON array of answers (dicomscu --find --format json)")
    try:
        return [Dataset.from_json(item) for item in items]
    except Exception as exc:
        raise UsageError(f"--from-json {path}: not DICOM JSON: {exc}") from None


def _json(document) -> str:
    import json  # only the JSON outputs pay for it

    return json.dumps(document)


def _error(env: Environment, message: str) -> None:
    from dicomscu.printable import printable

    env.err(f"dicomscu: error: {printable(message)}")  # one line, whatever a file name or a server said
