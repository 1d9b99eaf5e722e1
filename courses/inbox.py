"""Messages from course staff to a student: on the student's dashboard (unread
until opened) and by email.

The email goes out after commit from a Celery task that claims the message by
setting `emailed_at` with a compare-and-swap, so a task that runs twice (or
two workers) sends it once. Courses does not import provisioning: the
workspaces a message may be about come from a lister provisioning registers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import Count, F, Q, Window
from django.db.models.functions import RowNumber
from django.http import Http404
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from courses.models import Membership, Message
from courses.policy import Action, membership_may

SUBJECT_MAX = Message._meta.get_field("subject").max_length
BODY_MAX = 10_000
INBOX_SHOWN = 20  # newest messages shown per course on the dashboard


class InboxError(Exception):
    """Input refused; `errors` maps each field (or "" for the whole form) to its message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__(" ".join(errors.values()))
        self.errors = errors


# --- a member's workspaces (provisioning registers the lister) -----------------

_workspace_lister: Callable[[int], list[tuple[int, str]]] | None = None


def workspace_lister_register(lister: Callable[[int], list[tuple[int, str]]] | None) -> None:
    """Set how to list a member's workspaces as (id, name), newest first, in one query."""
    global _workspace_lister
    _workspace_lister = lister


def member_workspaces(*, membership_id: int) -> list[tuple[int, str]]:
    return [] if _workspace_lister is None else list(_workspace_lister(membership_id))


def workspace_pick(*, membership_id: int, workspace_id: int | None) -> tuple[int | None, str]:
    """(id, name) of one of the member's workspaces, or (None, "") for none;
    InboxError on the `workspace` field when it is not theirs."""
    if not workspace_id:
        return None, ""
    names = dict(member_workspaces(membership_id=membership_id))
    if workspace_id not in names:
        raise InboxError({"workspace": "That is not one of this student's workspaces."})
    return workspace_id, names[workspace_id]


# --- sending -------------------------------------------------------------------


def _text_clean(errors: dict[str, str], name: str, value: str, *, limit: int,
                missing: str) -> str:
    value = value.strip()
    if not value:
        errors[name] = missing
    elif len(value) > limit:
        errors[name] = f"At most {limit} characters (this is {len(value)})."
    return value


def message_send(*, sender: Membership, recipient: Membership, subject: str, body: str,
                 workspace_id: int | None = None) -> Message:
    """Staff (instructor, head TA, TA) write to a student of their course. The
    student sees it on their dashboard at once and gets it by email after commit."""
    if not membership_may(actor=sender, action=Action.SEND_MESSAGE, owner=recipient):
        raise PermissionDenied("Course staff may message the students of their course.")
    errors: dict[str, str] = {}
    subject = " ".join(subject.split())
    subject = _text_clean(errors, "subject", subject, limit=SUBJECT_MAX,
                          missing="Give the message a subject.")
    body = _text_clean(errors, "body", body, limit=BODY_MAX, missing="Write the message.")
    if recipient.status == Membership.Status.REVOKED:
        errors[""] = f"{recipient.display_name} no longer has access to {sender.course.code}."
    try:
        workspace_id, workspace_name = workspace_pick(membership_id=recipient.pk,
                                                      workspace_id=workspace_id)
    except InboxError as error:
        errors.update(error.errors)
        workspace_name = ""
    if errors:
        raise InboxError(errors)
    with transaction.atomic():
        message = Message.objects.create(
            course_id=recipient.course_id, sender=sender.user, sender_name=sender.display_name,
            recipient=recipient, subject=subject, body=body, workspace_id=workspace_id,
            workspace_name=workspace_name)
        _after_commit(message)
    return message


def _after_commit(message: Message) -> None:
    from courses import tasks  # the task module imports this one
    from courses.live import broadcast_member_inbox

    message_id, recipient_id = message.pk, message.recipient_id
    transaction.on_commit(lambda: tasks.message_email_send_task.delay(message_id))
    transaction.on_commit(lambda: broadcast_member_inbox(membership_id=recipient_id))


def message_email_send(*, message_id: int) -> bool:
    """Email the message unless it already went out; True if this call sent it."""
    message = (Message.objects.select_related("course", "recipient", "sender")
               .filter(pk=message_id).first())
    if message is None or message.emailed_at is not None:
        return False
    now = timezone.now()
    if not Message.objects.filter(pk=message_id, emailed_at__isnull=True).update(emailed_at=now):
        return False  # another worker has it
    try:
        _email(message).send()
    except Exception:
        Message.objects.filter(pk=message_id, emailed_at=now).update(emailed_at=None)
        raise
    return True


def _email(message: Message) -> EmailMessage:
    course = message.course
    url = settings.SITE_URL.rstrip("/") + reverse("message-open", args=[message.pk])
    body = render_to_string("courses/email/message.txt",
                            {"message": message, "course": course, "url": url})
    reply_to = [message.sender.email] if message.sender and message.sender.email else []
    return EmailMessage(subject=f"[{course.code}] {message.subject}", body=body,
                        to=[message.recipient.email], reply_to=reply_to)


# --- reading -------------------------------------------------------------------


def message_get_for(*, user, message_id: int) -> Message:
    """The message if `user` is its recipient; 404 otherwise (even for staff: a
    message is the student's, and we do not confirm it exists)."""
    message = (Message.objects.select_related("course", "recipient")
               .filter(pk=message_id, recipient__user=user, recipient__user__isnull=False)
               .first() if user.is_authenticated else None)
    if message is None:
        raise Http404("No such message.")
    return message


def message_read(*, message: Message) -> Message:
    """Mark it read (the first opening counts; opening again changes nothing)."""
    if message.read_at is None:
        now = timezone.now()
        if Message.objects.filter(pk=message.pk, read_at__isnull=True).update(read_at=now):
            message.read_at = now
        else:
            message.refresh_from_db(fields=["read_at"])
    return message


@dataclass
class Inbox:
    messages: list[Message] = field(default_factory=list)
    unread: int = 0


def inboxes_for(*, membership_ids: list[int], shown: int = INBOX_SHOWN) -> dict[int, Inbox]:
    """Each member's newest messages and unread count, in one query for any
    number of members and messages."""
    inboxes = {mid: Inbox() for mid in membership_ids}
    if not membership_ids:
        return inboxes
    # Unread first so none hides behind `shown` read ones, then newest; at most
    # `shown` per member, cut in the database, which counts the unread over all.
    order = [F("read_at").asc(nulls_first=True), F("created_at").desc(), F("pk").desc()]
    rows = (Message.objects.filter(recipient_id__in=membership_ids)
            .annotate(place=Window(RowNumber(), partition_by=F("recipient_id"), order_by=order),
                      unread_total=Window(Count("pk", filter=Q(read_at__isnull=True)),
                                          partition_by=F("recipient_id")))
            .filter(place__lte=shown).order_by("recipient_id", *order)
            .only("pk", "recipient_id", "sender_name", "subject", "body", "workspace_name",
                  "created_at", "read_at"))
    for message in rows:
        inbox = inboxes[message.recipient_id]
        inbox.unread = message.unread_total
        inbox.messages.append(message)
    return inboxes


def messages_of_user(*, user, unread_only: bool = False):
    """Every message sent to the user, in any course, newest first (the API)."""
    rows = Message.objects.filter(recipient__user=user).select_related("course")
    return rows.unread() if unread_only else rows
