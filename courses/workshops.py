"""Workshops: people join with an access code and their email, no roster.

A workshop runs from its start for its duration; joining is open only then.
Participants keep access through the optional extension, and when that ends
the end sweep revokes them (which stops their running workspaces through the
`membership_revoked` signal). Until the term-end close exists, that sweep is
all the clean-up a workshop gets.

Accounts: joining signs the participant in as the user with that email,
creating one without a password. An existing account that has a password, a
university sign-in, staff powers or a place in a non-workshop course is never
taken over by typing its email: the person is asked to sign in first and use
the code then. (An account made by an earlier workshop is reused, so whoever
has a workshop's code and a past participant's email can act as them in
workshops; that is the price of "code and email, nothing else".)
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from courses.models import Course, Membership
from courses.signals import membership_revoked

Role, Status = Membership.Role, Membership.Status

# 12 characters from 31 (no 0/O, 1/I/L): about 59 bits, shown as XXXX-XXXX-XXXX.
ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 12
_NOT_CODE = re.compile(r"[^A-Z0-9]")
# Wrong codes allowed per client address in a window before all joins are refused.
GUESS_LIMIT = 10
GUESS_WINDOW_SECONDS = 15 * 60
NAME_MAX = Membership._meta.get_field("name").max_length


class WorkshopError(Exception):
    """A join refused; `errors` maps each field (or "" for the whole form) to its message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__(" ".join(errors.values()))
        self.errors = errors


class SignInFirst(WorkshopError):
    """The email belongs to an account we will not take over by email alone."""


def access_code_new() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def access_code_normalize(raw: str) -> str:
    """What people type ("abcd efgh-jkmn", lower case, dashes) as stored."""
    return _NOT_CODE.sub("", raw.upper())


def access_code_display(code: str) -> str:
    return "-".join(code[i:i + 4] for i in range(0, len(code), 4))


def workshop_code_regenerate(*, course: Course) -> Course:
    """A new code; the old one stops working at once. The caller checks the role
    (only the instructor, Action.MANAGE_WORKSHOP_CODE)."""
    if course.kind != Course.Kind.WORKSHOP:
        raise ValidationError({"access_code": ["Only workshops have an access code."]})
    course.access_code = access_code_new()
    Course.objects.filter(pk=course.pk).update(access_code=course.access_code)
    return course


# --- guessing ----------------------------------------------------------------


def _guess_key(client: str) -> str:
    return f"workshop-join-guesses:{client}"


def join_rate_limited(*, client: str) -> bool:
    return (cache.get(_guess_key(client)) or 0) >= GUESS_LIMIT


def _guess_count(client: str) -> None:
    key = _guess_key(client)
    if cache.add(key, 1, GUESS_WINDOW_SECONDS):
        return
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, GUESS_WINDOW_SECONDS)


# --- joining -------------------------------------------------------------------


@dataclass(frozen=True)
class Joined:
    membership: Membership
    user: object
    created: bool  # a new membership (not someone coming back)


def workshop_find(*, code: str) -> Course | None:
    code = access_code_normalize(code)
    if len(code) != CODE_LENGTH:
        return None
    return Course.objects.filter(kind=Course.Kind.WORKSHOP, access_code=code).first()


def _window_refusal(course: Course, now) -> str | None:
    zone = course.zone
    if course.status in {Course.Status.CLOSING, Course.Status.CLOSED} \
            or course.workshop_starts_at is None or course.workshop_ends_at is None:
        return f"{course.title} is not open for joining."
    if now < course.workshop_starts_at:
        start = course.workshop_starts_at.astimezone(zone)
        return (f"{course.title} has not started yet: joining opens "
                f"{start:%A %b %-d at %H:%M} ({course.time_zone}).")
    if now >= course.workshop_ends_at:
        end = course.workshop_ends_at.astimezone(zone)
        return f"{course.title} ended {end:%A %b %-d at %H:%M} ({course.time_zone})."
    return None


def _account_for(email: str, name: str):
    """The user to sign in as, creating one; SignInFirst if the account is someone's own."""
    User = get_user_model()
    user = User.objects.filter(email__iexact=email).order_by("pk").first()
    if user is None:
        from allauth.account.adapter import get_adapter

        first, _, last = name.partition(" ")
        user = User(username=get_adapter().generate_unique_username([email.split("@")[0],
                                                                     "participant"]),
                    email=email, first_name=first[:150], last_name=last[:150])
        user.set_unusable_password()
        user.save()
        return user
    owned = (user.has_usable_password() or user.is_staff or user.is_superuser
             or user.socialaccount_set.exists()
             or Membership.objects.filter(user=user).exclude(
                 course__kind=Course.Kind.WORKSHOP).exists())
    if owned or not user.is_active:
        raise SignInFirst({"email": f"There is already an account with {email}. Sign in "
                                    "first, then enter the code again."})
    return user


def workshop_join(*, code: str, email: str = "", name: str = "", user=None,
                  client: str = "") -> Joined:
    """Join the workshop whose code this is, as `user` if signed in, else as the
    person with `email`. Wrong codes count against `client` (the address), so
    codes cannot be guessed at speed. Raises WorkshopError with field messages."""
    if client and join_rate_limited(client=client):
        raise WorkshopError({"code": "Too many wrong codes from your network. Wait "
                                     f"{GUESS_WINDOW_SECONDS // 60} minutes and try again."})
    errors: dict[str, str] = {}
    if user is None:
        email = email.strip()
        if not email:
            errors["email"] = "Enter your email address."
        else:
            try:
                validate_email(email)
            except ValidationError:
                errors["email"] = f"“{email}” is not an email address."
    name = " ".join(name.split())
    if len(name) > NAME_MAX:
        errors["name"] = f"At most {NAME_MAX} characters."
    if not code.strip():
        errors["code"] = "Enter the workshop's access code."
    if errors:
        raise WorkshopError(errors)
    course = workshop_find(code=code)
    if course is None:
        if client:
            _guess_count(client)
        raise WorkshopError({"code": "That code does not open any workshop. Check it "
                                     "with your instructor."})
    if refusal := _window_refusal(course, timezone.now()):
        raise WorkshopError({"code": refusal})
    if user is not None:
        email = user.email or email
        name = name or user.get_full_name()
        if not email:
            raise WorkshopError({"email": "Your account has no email address; add one first."})
    try:
        with transaction.atomic():
            # The course row lock makes "is there room?" and the insert one step.
            course = Course.objects.select_for_update().get(pk=course.pk)
            if user is None:
                user = _account_for(email, name)
            return _membership_ensure(course, user, email, name)
    except IntegrityError:  # the same person joining twice at once: take the winner
        member = Membership.objects.get(course=course, email__iexact=email)
        return Joined(membership=member, user=member.user, created=False)


def _membership_ensure(course: Course, user, email: str, name: str) -> Joined:
    member = (Membership.objects.filter(course=course, user=user).first()
              or Membership.objects.filter(course=course, email__iexact=email).first())
    if member is not None:
        if member.status == Status.REVOKED:
            raise WorkshopError({"": "Your access to this workshop was removed. Ask the "
                                     "instructor if that is a mistake."})
        if member.user_id not in (None, user.pk):
            raise SignInFirst({"email": f"{email} joined this workshop with another account; "
                                        "sign in with it."})
        Membership.objects.filter(pk=member.pk).update(
            user=user, status=Status.ACTIVE, name=member.name or name)
        member.refresh_from_db()
        return Joined(membership=member, user=user, created=False)
    limit = course.workshop_max_participants
    if limit and Membership.objects.filter(
            course=course, role=Role.STUDENT, status=Status.ACTIVE).count() >= limit:
        raise WorkshopError({"code": f"{course.title} is full ({limit} participants). Ask "
                                     "the instructor for a place."})
    member = Membership.objects.create(
        course=course, user=user, email=email, name=name, role=Role.STUDENT,
        status=Status.ACTIVE)
    return Joined(membership=member, user=user, created=True)


# --- the end -------------------------------------------------------------------


def workshops_end_due(*, now=None) -> int:
    """Revoke the participants of every workshop whose access (duration plus
    extension) has ended; staff keep theirs. Returns how many were revoked.

    Idempotent: each revocation is a compare-and-swap from invited/active, and
    the signal (which stops the member's running workspaces) goes out only for
    rows this run changed. A participant whose revocation fails is retried on
    the next run, since the filter still finds them.
    """
    now = now or timezone.now()
    due = (Membership.objects
           .filter(course__kind=Course.Kind.WORKSHOP,
                   course__workshop_access_ends_at__lte=now,
                   role=Role.STUDENT, status__in=[Status.INVITED, Status.ACTIVE])
           .values_list("pk", flat=True))
    revoked = 0
    for membership_id in list(due):
        with transaction.atomic():
            changed = (Membership.objects
                       .filter(pk=membership_id, status__in=[Status.INVITED, Status.ACTIVE])
                       .update(status=Status.REVOKED, revoked_at=now))
            if changed:
                member = Membership.objects.select_related("course").get(pk=membership_id)
                membership_revoked.send(sender=Membership, membership=member, actor=None)
                revoked += 1
    return revoked
