"""airudder-receiver: takes in AIRudder "Custom API Node Data Push" calls and keeps each one in SQLite."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import ssl
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from commands import COMMANDS, run_command
from forwarding.dispatcher import Dispatcher
from handlers.access import ACCESS, AccessPolicy
from handlers.content_encoding import RAW_BODIES
from handlers.errors import PUSH_REJECT_CODES, PUSH_UNAVAILABLE_CODES, errors_and_access_log
from handlers.event_hub import EventHub
from handlers.keys import (
    DATABASE,
    EVENTS,
    METRICS,
    READERS,
    READY_PROBE,
    RECENT_STORES,
    REQUEST_LINES,
    SETTINGS,
    WRITER,
)
from handlers.metrics_registry import Metrics
from handlers.push_lines import log_pushes
from handlers.ready_probe import ReadyProbe
from handlers.recent_stores import RecentStores
from handlers.request_lines import RequestLines
from handlers.routes import setup_routes
from plumbing import event_loop, logs
from plumbing.addresses import local_url
from plumbing.exits import fail
from plumbing.settings import (
    DATABASE_URL_ENV,
    DRAIN_SECONDS,
    FORWARD_STOP_SECONDS,
    LOG_FORMATS,
    ConfigError,
    Settings,
    load,
    require_guarded,
)
from plumbing.systemd_notify import Notifier
from plumbing.version import VERSION
from storage.backend import DatabaseUnavailable
from storage.database import Database
from storage.records import Outcome, Record

log = logging.getLogger("airudder_receiver")


class StartupError(Exception):
    """The server cannot start; the message is one sentence for the operator."""


def database_context(settings: Settings) -> Any:
    """The database for the app's whole life: opened and migrated at start, drained and closed at the end."""
    stopping_since: list[float] = []

    async def mark_stopping(app: web.Application) -> None:
        stopping_since.append(asyncio.get_running_loop().time())

    @asynccontextmanager
    async def run_database(app: web.Application) -> AsyncIterator[None]:
        database = Database(settings)
        try:
            await database.open_writer()
        except DatabaseUnavailable as exc:
            raise StartupError(str(exc)) from exc
        writer = database.writer
        try:
            writer.add_listener(app[METRICS].on_commit)
            # Every receiver's pushes when several share the database, else this writer's commits.
            if not await database.follow_pushes(app[EVENTS].on_pushes):
                writer.add_listener(app[EVENTS].on_commit)
            if settings.log_pushes:
                writer.add_listener(log_pushes)
            app[METRICS].watch_queue(lambda: writer.depth)
            app[METRICS].watch_database(database.size, database.health)
            if (replicated := database.replicated_file()) is not None:
                app[METRICS].watch_drills(str(replicated))
            app[WRITER] = writer
            app[DATABASE] = database
            app[READERS] = database.readers
            app.on_shutdown.append(mark_stopping)
            dispatcher = await start_dispatcher(settings, database, app[METRICS])
        except BaseException:
            # The write connection's thread would keep a process that failed to start alive.
            await database.close(drain_seconds=1.0)
            raise
        yield
        # Runs after the HTTP side has stopped and in-flight requests have finished. Deliveries in flight
        # get a moment; the rest stay pending in the file. The drain gets what is left of its budget, and
        # at least a second.
        if dispatcher is not None:
            await dispatcher.close(grace=FORWARD_STOP_SECONDS)
        elapsed = asyncio.get_running_loop().time() - stopping_since[0] if stopping_since else 0.0
        if await database.close(drain_seconds=max(1.0, DRAIN_SECONDS - elapsed)):
            log.info("writer drained and database closed")
        else:
            log.error("database closed with queued records left unwritten")

    return run_database


async def start_dispatcher(settings: Settings, database: Database, metrics: Metrics) -> Dispatcher | None:
    """The forwarding dispatcher when [[forward]] destinations are configured; woken by each commit of new pushes."""
    if not settings.forward:
        return None
    dispatcher = Dispatcher(settings.forward, await database.open_outbox(), database.writer, metrics)
    metrics.watch_destinations([d.name for d in settings.forward])

    def wake(records: Sequence[Record], outcomes: Sequence[Outcome], seconds: float) -> None:
        if any(outcome in (Outcome.NEW, Outcome.NEW_VERSION) for outcome in outcomes):
            dispatcher.wake()

    database.writer.add_listener(wake)
    dispatcher.start()
    return dispatcher


async def _end_event_streams(app: web.Application) -> None:
    app[EVENTS].close()


async def _flush_request_lines(app: web.Application) -> None:
    # After the last request has been answered: its summary's timer would not run any more.
    app[REQUEST_LINES].flush()


def create_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[errors_and_access_log], handler_args=RAW_BODIES)
    app[SETTINGS] = settings
    app[METRICS] = Metrics(PUSH_REJECT_CODES, PUSH_UNAVAILABLE_CODES)
    app[EVENTS] = EventHub()
    app[ACCESS] = AccessPolicy.from_settings(settings)
    app[READY_PROBE] = ReadyProbe()
    app[RECENT_STORES] = RecentStores()
    app[REQUEST_LINES] = RequestLines(settings.log_requests_per_second)
    app.on_shutdown.append(_end_event_streams)
    # First of the cleanups, before the database's drain, which may take seconds.
    app.on_cleanup.insert(0, _flush_request_lines)
    app.cleanup_ctx.append(database_context(settings))
    setup_routes(app, settings)
    app[METRICS].add_routes(resource.canonical for resource in app.router.resources())
    return app


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """HTTPS when a certificate is configured; a file that does not load stops the start."""
    if not settings.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except OSError as exc:  # ssl.SSLError is an OSError
        raise StartupError(f"cannot load tls_cert {settings.tls_cert} with tls_key {settings.tls_key}: {exc}") from exc
    return context


async def serve(settings: Settings) -> None:
    app = create_app(settings)
    context = tls_context(settings)
    runner = web.AppRunner(
        app,
        access_log=None,  # the middleware logs one line per request, with the token masked
        handle_signals=False,
        shutdown_timeout=settings.shutdown_timeout,
        # aiohttp starts this clock when a connection opens and again after each answer; a client that
        # has not sent a whole request head by then is cut off, however slowly it trickles bytes.
        keepalive_timeout=settings.idle_timeout,
    )
    notifier = Notifier.from_environment()
    await runner.setup()  # opens and migrates the database, starts the writer
    watchdog: asyncio.Task[None] | None = None
    try:
        # Before the port opens: a client that saw /healthz answer may stop the server at once, while the
        # start-up line still waits for the database's schema version.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        site = web.TCPSite(runner, settings.host, settings.port, ssl_context=context)
        await site.start()
        scheme = "https" if context else "http"
        database = app[DATABASE]
        log.info(
            "airudder-receiver %s listening on %s://%s:%d%s, database %s (schema version %d), ack=%s%s",
            VERSION,
            scheme,
            settings.host,
            settings.port,
            f"{settings.push_path}/*** (push token loaded)"
            if settings.push_token
            else f"{settings.push_path} (no push token loaded)",
            database.name,
            await database.schema_version(),
            settings.ack,
            f", inspector on {local_url(scheme, settings.host, settings.port)}/" if settings.inspector else "",
        )
        notifier.ready(f"listening on {settings.host}:{settings.port}")
        # Pings stop when the writer dies, so that systemd restarts a server that can no longer store.
        watchdog = asyncio.create_task(notifier.watchdog(lambda: app[WRITER].running))
        await stop.wait()
        log.info("stopping: finishing requests and draining the queue")
    finally:
        notifier.stopping("finishing requests and draining the queue")
        if watchdog is not None:
            watchdog.cancel()
        await runner.cleanup()


def _add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML file (default: ./config.toml when present)")
    parser.add_argument(
        "--db", dest="db_path", help=f"SQLite file, or a postgresql:// URL (better in {DATABASE_URL_ENV})"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airudder-receiver", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="run the receiver (the default)")
    serve_cmd.add_argument("--version", action="version", version=f"airudder-receiver {VERSION}")
    _add_common_arguments(serve_cmd)
    serve_cmd.add_argument("--host", help="address to bind")
    serve_cmd.add_argument("--port", type=int, help="port to bind")
    serve_cmd.add_argument("--log-format", choices=LOG_FORMATS, help="log line format (auto: json under systemd)")
    serve_cmd.add_argument(
        "--dev",
        action="store_true",
        help="local development: 127.0.0.1 only, text logs, one line per push, inspector page on /",
    )
    for command in COMMANDS:
        sub = commands.add_parser(command.NAME, help=command.HELP)
        _add_common_arguments(sub)
        command.add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # The database, its -wal and -shm, exports and backups hold the callers' data: owner-only, whatever umask
    # the shell or `make run` came with (systemd's UMask=0077 says the same for the service).
    os.umask(0o077)
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (args_list[0].startswith("-") and args_list[0] not in ("-h", "--help", "--version")):
        args_list.insert(0, "serve")
    args = _parser().parse_args(args_list)
    overrides = {name: getattr(args, name, None) for name in ("host", "port", "db_path", "log_format")}
    try:
        settings = load(args.config, overrides, dev=bool(getattr(args, "dev", False)))
        if args.command == "serve":
            require_guarded(settings)
    except ConfigError as exc:
        return fail(str(exc))
    if args.command != "serve":
        command = next(c for c in COMMANDS if args.command == c.NAME)
        return run_command(command, args, settings)
    log_format = logs.resolve_format(settings.log_format)
    logs.configure(log_format, settings.log_level, settings.push_path, settings.push_token)
    try:
        event_loop.run(serve(settings))
    except StartupError as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"cannot listen on {settings.host}:{settings.port}: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
