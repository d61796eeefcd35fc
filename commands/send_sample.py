"""``send-sample``: post the vendor's sample push (or a file) the way AIRudder's sender does.

Like the sender: one POST with a 10 s timeout; anything but a 2xx answer is retried, up to
``--retries`` more times, ``--interval`` seconds apart. Each attempt is printed.
"""

from __future__ import annotations

import argparse
import ssl
import time
import urllib.error
import urllib.request
import uuid
from importlib import resources
from pathlib import Path

import orjson

from plumbing.addresses import local_url
from plumbing.exits import fail
from plumbing.settings import PUSH_TOKEN_ENV, Settings

NAME = "send-sample"
HELP = "post the vendor's sample push (or --file) like AIRudder's sender, with its retries"

SENDER_TIMEOUT = 10.0
SENDER_RETRIES = 5
SENDER_INTERVAL = 60.0


def vendor_sample() -> bytes:
    """The sample push from the vendor's documentation, shipped inside the package."""
    return resources.files("commands").joinpath("sample_push.json").read_bytes()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="where to post (default: this configuration's push URL on this machine)")
    parser.add_argument("--file", type=Path, help="post this file instead of the vendor's sample")
    parser.add_argument("--fresh-call-id", action="store_true", help="give the push a new call.call_id")
    parser.add_argument("--retries", type=int, default=SENDER_RETRIES, help="retries after a failure (default 5)")
    parser.add_argument(
        "--interval", type=float, default=SENDER_INTERVAL, help="seconds between attempts (default 60, as the sender)"
    )


def default_url(settings: Settings) -> str:
    path = f"{settings.push_path}/{settings.push_token}" if settings.push_token else settings.push_path
    return local_url("https" if settings.tls_cert else "http", settings.host, settings.port) + path


def trust_own_certificate(settings: Settings) -> ssl.SSLContext:
    """Trust exactly the certificate this server is configured with, for a post to this machine.

    The address posted to is loopback, not the name the certificate was issued for, so the name is not
    checked; the trust comes from the certificate being the configured one (itself a trust anchor even
    when a CA issued it).
    """
    context = ssl.create_default_context(cafile=settings.tls_cert)
    context.check_hostname = False
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


def with_fresh_call_id(body: bytes) -> bytes:
    push = orjson.loads(body)
    if not isinstance(push, dict) or not isinstance(push.get("call"), dict):
        raise ValueError("the push has no call object to put a call_id in")
    push["call"]["call_id"] = uuid.uuid4().hex
    return orjson.dumps(push)


def post_once(url: str, body: bytes, timeout: float, tls: ssl.SSLContext | None) -> tuple[int | None, str]:
    """The status (None when there was no answer) and a short description of what happened."""
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=tls) as response:
            return response.status, response.read(500).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        retry_after = exc.headers.get("Retry-After")
        text = exc.read(500).decode(errors="replace")
        return exc.code, f"{text} (Retry-After: {retry_after})" if retry_after else text
    except urllib.error.URLError as exc:
        return None, f"no answer: {exc.reason}"
    except (TimeoutError, OSError) as exc:
        return None, f"no answer: {exc}"


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.retries < 0 or args.interval < 0:
        return fail("send-sample: --retries and --interval must not be negative")
    try:
        body = args.file.read_bytes() if args.file else vendor_sample()
        if args.fresh_call_id:
            body = with_fresh_call_id(body)
    except (OSError, ValueError) as exc:
        return fail(f"send-sample: cannot prepare the push: {exc}")
    url = args.url or default_url(settings)
    try:
        tls = trust_own_certificate(settings) if settings.tls_cert and not args.url else None
    except (OSError, ssl.SSLError) as exc:
        return fail(f"send-sample: cannot load tls_cert {settings.tls_cert}: {exc}")
    # The push token is a secret: it is used, never shown.
    shown = url.replace(settings.push_token, "***") if settings.push_token else url
    attempts = args.retries + 1
    if not settings.push_token and not args.url:
        print(f"no push token is loaded (push_token, or {PUSH_TOKEN_ENV} in the environment): posting without one")
    print(f"posting {len(body)} bytes ({args.file or 'the vendor sample'}) to {shown}")
    for attempt in range(1, attempts + 1):
        started = time.perf_counter()
        status, text = post_once(url, body, SENDER_TIMEOUT, tls)
        took = (time.perf_counter() - started) * 1000
        outcome = f"HTTP {status}" if status is not None else "failed"
        print(f"attempt {attempt}/{attempts}: {outcome} after {took:.0f} ms: {text}")
        if status is not None and 200 <= status < 300:
            return 0
        if attempt < attempts:
            print(f"retrying in {args.interval:g} s")
            time.sleep(args.interval)
    print(f"gave up after {attempts} attempts")
    return 1
