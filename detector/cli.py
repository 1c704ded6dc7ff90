"""The ``otel-anomaly`` command line (also ``python -m detector``).

Sub-commands (see CONTRACT.md, "CLI"):

``serve [--config FILE]``        run until SIGTERM/SIGINT; SIGHUP reloads the config. Exit 0 on a clean stop.
``check-config FILE``            validate; one ``FILE:LINE: path: message`` line per problem. Exit 0 valid, 2 invalid.
``config-schema``                print the JSON Schema of the config. Exit 0.
``replay [--config FILE] PATH…`` feed captured OTLP through the pipeline in event time; alert transitions
                                 as JSON lines on stdout, summary on stderr. Exit 0, 2 on unreadable input.
``demo`` / ``eval``              provided by :mod:`detector.sim.demo` / :mod:`detector.eval.run`.

This is the only module that exits the process; library code raises.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any, Sequence

from detector import __version__

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_INVALID = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="otel-anomaly", description="Anomaly detection at the end of an OpenTelemetry pipeline.")
    p.add_argument("--version", action="version", version=f"otel-anomaly {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("serve", help="run the OTLP receiver, detectors and HTTP endpoints")
    s.add_argument("--config", "-c", metavar="FILE", help="YAML config (default: built-in defaults)")

    c = sub.add_parser("check-config", help="validate a config file (exit 2 when invalid)")
    c.add_argument("file", metavar="FILE")

    sub.add_parser("config-schema", help="print the JSON Schema of the config")

    r = sub.add_parser("replay", help="replay captured OTLP (JSON lines, .gz, .pb) through the pipeline")
    r.add_argument("--config", "-c", metavar="FILE", help="YAML config (default: built-in defaults)")
    r.add_argument("paths", nargs="+", metavar="PATH")

    sub.add_parser("demo", help="serve + simulated traffic with injected incidents", add_help=False)
    sub.add_parser("eval", help="run the evaluation harness", add_help=False)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code.

    Output piped into a reader that stops early (``| head``, ``| jq`` exiting)
    ends the command quietly with exit 1 instead of a BrokenPipeError traceback
    (the recipe of the Python docs, ``signal`` "Note on SIGPIPE").
    """
    try:
        return _main(argv)
    except BrokenPipeError:
        # stdout is gone: point it at devnull so the interpreter's final flush does not fail again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # demo/eval own their arguments: hand everything after the word over untouched.
    if argv and argv[0] in ("demo", "eval"):
        target = {"demo": "detector.sim.demo", "eval": "detector.eval.run"}[argv[0]]
        return _delegate(target, argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        return _check_config(args.file)
    if args.command == "config-schema":
        from detector.config.loader import config_json_schema_text

        print(config_json_schema_text())
        return EXIT_OK
    if args.command == "serve":
        from detector.app import serve_main

        return serve_main(args.config)
    if args.command == "replay":
        from detector.replay.runner import replay_main

        return replay_main(args.config, args.paths)
    return EXIT_ERROR  # pragma: no cover - argparse guarantees a command


def _check_config(path: str) -> int:
    from detector.config.loader import ConfigError, load_config

    try:
        config = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem)
        return EXIT_INVALID
    try:  # checks that need more than the schema (the memory budget plan)
        from detector.state.budget import apply_budget

        apply_budget(config.model_copy(deep=True))
    except ImportError:
        pass
    except ValueError as exc:
        print(f"{path}: {exc}")
        return EXIT_INVALID
    problems = _credential_file_problems(config)
    if problems:
        from detector.config.loader import key_lines

        lines = key_lines(path)
        for dotted, message in problems:
            line = lines.get(dotted)
            print(f"{path}:{line}: {dotted}: {message}" if line else f"{path}: {dotted}: {message}")
        return EXIT_INVALID
    print(f"{path}: valid")
    return EXIT_OK


def _credential_file_problems(config: Any) -> list[tuple[str, str]]:
    """``[(dotted section, message)]`` for TLS/secret files ``serve`` could not use.

    Runs the same loaders ``serve`` runs at start (relative paths resolve
    against the current directory, as for ``serve``); messages name the key and
    file, never the content.
    """
    from detector.expose.http import HttpServerError, load_basic_auth, load_ssl_context
    from detector.receive.server import ReceiverError, load_tls_material, read_bearer_token

    grpc, http = config.receiver.grpc, config.http
    checks = [
        ("receiver.grpc.tls", grpc.tls, load_tls_material),
        ("receiver.grpc.auth", grpc.auth, read_bearer_token),
        ("http.tls", http.tls, load_ssl_context),
        ("http.basic_auth", http.basic_auth, load_basic_auth),
    ]
    problems = []
    for dotted, section, load in checks:
        if section is None:
            continue
        try:
            load(section)
        except (HttpServerError, ReceiverError) as exc:
            problems.append((dotted, str(exc)))
    return problems


def _delegate(module: str, argv: list[str]) -> int:
    """Run ``module.main(argv)``; a clear message when that part is not installed yet."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            print(f"otel-anomaly: {module} is not available in this build ({exc})", file=sys.stderr)
            return EXIT_ERROR
        raise
    result = mod.main(argv)
    return int(result or 0)
