"""The persisted notification outbox: every notification is a row before anything is sent.

One row = one notification to one channel, with a unique idempotency key
(``<alert key>:<event>:<channel>``). Its delivery is a state machine whose transitions all
live in :data:`TRANSITIONS`::

    pending --claim--> sending --delivered--> sent
       ^                  |
       +----failed--------+          (retry after backoff: retry, 2×retry, … ≤ retry_max)
       +----crashed-------+          (found in "sending" at start-up: the sender died)
    pending/sending --expire--> dead (still undelivered dead_letter_after after queueing)

    silenced, unrouted               (recorded for the audit trail, never sent)

Protocol, so that a crash at any instant loses nothing and repeats as little as possible:

1. *claim*: ``UPDATE … SET state='sending', claim_token=T WHERE id=? AND state='pending'``,
   committed before any byte goes out (only one sender can win a row);
2. *send* with the idempotency key attached (``Idempotency-Key`` header where the channel has
   headers, and in the body's last line);
3. *mark*: ``UPDATE … SET state='sent' WHERE id=? AND claim_token=T``, committed.

A crash before 1 or after 3 changes nothing. A crash between 1 and 3 leaves the row in
``sending``; the next start (which holds the store's single-instance lock, so no other
sender can own it) moves it back to ``pending`` and sends it again **with the same key**.
That window — the receiver accepted the message but the daemon died before step 3 commits —
cannot be closed from the sender's side over SMTP or plain HTTP (neither protocol lets a
client ask "did you get this already?"), so the guarantee is: every notification is
delivered at least once, only notifications in flight at the moment of a crash can be
delivered twice, and those repeats carry the same idempotency key so a receiver can drop
them (docs/daemon.md, "Delivery guarantees").
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tlswatch.daemon.store.models import OutboxRow

PENDING, SENDING, SENT, DEAD, SILENCED, UNROUTED = (
    "pending",
    "sending",
    "sent",
    "dead",
    "silenced",
    "unrouted",
)

TRANSITIONS: dict[tuple[str, str], str] = {
    (PENDING, "claim"): SENDING,
    (SENDING, "delivered"): SENT,
    (SENDING, "failed"): PENDING,
    (SENDING, "crashed"): PENDING,
    (PENDING, "expire"): DEAD,
    (SENDING, "expire"): DEAD,
}


class OutboxStateError(RuntimeError):
    pass


def next_state(state: str, event: str) -> str:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise OutboxStateError(f"outbox: no transition from {state!r} on {event!r}") from None


def new_token() -> str:
    return uuid.uuid4().hex


def enqueue(
    s: Session,
    *,
    key: str,
    alert_key: str,
    event: str,
    channel: str,
    severity: str,
    title: str,
    body: str,
    now: datetime,
    state: str = PENDING,
    note: str | None = None,
) -> bool:
    """Insert a notification unless its idempotency key is already there (then: False)."""
    if s.scalar(select(OutboxRow.id).where(OutboxRow.idempotency_key == key)) is not None:
        return False
    s.add(
        OutboxRow(
            idempotency_key=key,
            alert_key=alert_key,
            event=event,
            channel=channel,
            severity=severity,
            title=title,
            body=body,
            created_at=now,
            state=state,
            attempts=0,
            next_attempt_at=now if state == PENDING else None,
            last_error=note,
        )
    )
    s.flush()
    return True


def due(s: Session, now: datetime, limit: int = 100) -> list[OutboxRow]:
    return list(
        s.scalars(
            select(OutboxRow)
            .where(OutboxRow.state == PENDING, OutboxRow.next_attempt_at <= now)
            .order_by(OutboxRow.id)
            .limit(limit)
        )
    )


def next_attempt(s: Session) -> datetime | None:
    return s.scalar(
        select(OutboxRow.next_attempt_at)
        .where(OutboxRow.state == PENDING)
        .order_by(OutboxRow.next_attempt_at)
        .limit(1)
    )


def claim(s: Session, row_id: int, token: str, now: datetime) -> bool:
    res = s.execute(
        update(OutboxRow)
        .where(OutboxRow.id == row_id, OutboxRow.state == PENDING, OutboxRow.next_attempt_at <= now)
        .values(
            state=next_state(PENDING, "claim"),
            claim_token=token,
            claimed_at=now,
            attempts=OutboxRow.attempts + 1,
        )
    )
    return bool(res.rowcount)  # type: ignore[attr-defined]


def mark_sent(s: Session, row_id: int, token: str, now: datetime) -> bool:
    res = s.execute(
        update(OutboxRow)
        .where(OutboxRow.id == row_id, OutboxRow.state == SENDING, OutboxRow.claim_token == token)
        .values(state=next_state(SENDING, "delivered"), sent_at=now, last_error=None)
    )
    return bool(res.rowcount)  # type: ignore[attr-defined]


def backoff(attempts: int, retry: timedelta, retry_max: timedelta) -> timedelta:
    return min(retry * (2 ** max(0, attempts - 1)), retry_max)


def mark_failed(
    s: Session,
    row_id: int,
    token: str,
    now: datetime,
    error: str,
    retry: timedelta,
    retry_max: timedelta,
    dead_after: timedelta,
) -> str:
    row = s.get(OutboxRow, row_id)
    if row is None or row.state != SENDING or row.claim_token != token:
        return row.state if row is not None else DEAD
    if now - row.created_at >= dead_after:
        row.state = next_state(SENDING, "expire")
        row.dead_at = now
    else:
        row.state = next_state(SENDING, "failed")
        row.next_attempt_at = now + backoff(row.attempts, retry, retry_max)
    row.last_error = error[:2000]
    row.claim_token = None
    return row.state


def recover_claims(s: Session) -> int:
    """At start-up (holding the single-instance lock): claims left by a dead process go back
    to pending, to be sent again with the same idempotency key."""
    rows = list(s.scalars(select(OutboxRow).where(OutboxRow.state == SENDING)))
    for row in rows:
        row.state = next_state(SENDING, "crashed")
        row.claim_token = None
        row.last_error = (
            "tlswatch stopped while sending this notification: sending it again with the same "
            "idempotency key (the receiver may have it already)"
        )
    return len(rows)


def expire(s: Session, now: datetime, dead_after: timedelta) -> int:
    rows = list(
        s.scalars(
            select(OutboxRow).where(
                OutboxRow.state == PENDING, OutboxRow.created_at <= now - dead_after
            )
        )
    )
    for row in rows:
        row.state = next_state(PENDING, "expire")
        row.dead_at = now
        row.last_error = (row.last_error or "never attempted") + " (dead-lettered)"
    return len(rows)


def listing(s: Session, states: list[str] | None, limit: int) -> list[OutboxRow]:
    q = select(OutboxRow).order_by(OutboxRow.id.desc()).limit(limit)
    if states:
        q = q.where(OutboxRow.state.in_(states))
    return list(s.scalars(q))
