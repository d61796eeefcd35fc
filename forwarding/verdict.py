"""What one attempt's result means: for the destination (the breaker), and for the delivery (its record).

A failure the breaker puts on the destination (it opened on it, or it is paused) leaves the delivery as
it was: still due, so the next probe, and with its attempts uncounted, however long the outage. Any other
failure is the delivery's: it waits its turn on the retry schedule, and is dead after ``max_attempts``, or
after ``max_4xx_attempts`` when the destination refused the body.
"""

from __future__ import annotations

import logging
import time

from forwarding import senders
from forwarding.breaker import Breaker
from forwarding.schedule import retry_delay
from plumbing.destinations import Destination
from storage.outbox import Job
from storage.records import AttemptRecord

log = logging.getLogger("airudder_receiver.forward")


def judge(
    d: Destination,
    breaker: Breaker,
    job: Job,
    result: senders.Result,
    started: float,
    attempted_at: str,
    seconds: float,
) -> AttemptRecord:
    """The record of one attempt, after telling the breaker about it."""
    if job.body is None:  # nothing was sent: it says nothing about the destination
        return AttemptRecord(job.id, attempted_at, None, seconds, result.error, "dead", job.next_attempt_at)
    was_closed = breaker.closed
    if result.delivered:
        breaker.record(started, failed=False)
        if not was_closed and breaker.closed:
            log.info("forward destination %s answers again: sending resumes", d.name)
        return AttemptRecord(job.id, attempted_at, result.status, seconds, None, "delivered", job.next_attempt_at)
    if result.gone:
        breaker.hold(f"{result.error}; forward resume {d.name} sends again")
        log.error("forward destination %s answered 410 Gone: paused until forward resume %s", d.name, d.name)
        destination_failed = True
    else:
        # A refusal is an answer: the destination is up, whatever it thinks of this body.
        destination_failed = breaker.record(started, result.down, result.error or "", result.retry_after)
    if destination_failed:
        if was_closed and breaker.pause is not None and breaker.pause.until is not None:
            wait = breaker.pause.until - time.time()
            log.warning("forward destination %s is down (%s); probing it in %.1fs", d.name, result.error, wait)
        # The destination's failure: the delivery keeps its place (still due, the next probe) and its life.
        return AttemptRecord(
            job.id, attempted_at, result.status, seconds, result.error, "pending", job.next_attempt_at, counted=False
        )
    failures = job.attempts + 1
    if failures >= d.max_attempts or (result.refused and failures >= d.max_4xx_attempts):
        log.error(
            "delivery %s to %s is dead after %d attempts: %s", job.idempotency_key, d.name, failures, result.error
        )
        return AttemptRecord(job.id, attempted_at, result.status, seconds, result.error, "dead", job.next_attempt_at)
    delay = max(retry_delay(failures, d.backoff_base, d.backoff_cap), result.retry_after or 0.0)
    return AttemptRecord(job.id, attempted_at, result.status, seconds, result.error, "pending", time.time() + delay)
