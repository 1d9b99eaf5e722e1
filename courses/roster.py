"""The roster: people added one by one or from a CSV file, invitations, revoking.

A CSV import is all-or-nothing. The preview says what each row would do (new,
already a member, changed, or an error with its row, field and reason); the
commit recomputes that preview inside one transaction with the course row
locked and writes only if no row has an error, so a preview that went stale
in the meantime cannot let a bad row in.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections import Counter
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import EmailMessage
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Case, Count, IntegerField, Q, QuerySet, Value, When
from django.http import Http404
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from courses.models import Course, Membership, Section
from courses.policy import Action, membership_may
from courses.services import membership_get_active
from courses.signals import membership_revoked

Role = Membership.Role
Status = Membership.Status

MAX_ROWS = 5000
MAX_BYTES = 1_000_000
COLUMNS = ("email", "name", "section", "role")
HEADER_HINT = "email,name,section (role optional)"
NAME_MAX = Membership._meta.get_field("name").max_length
SECTION_MAX = Section._meta.get_field("name").max_length
ROLE_WORDS = ", ".join(Role.values[:-1]) + " or " + Role.values[-1]


class RosterError(Exception):
    """Input the roster refuses; `errors` maps each field to its message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__(" ".join(errors.values()))
        self.errors = errors


# --- who may change whom ---------------------------------------------------


def roles_assignable(actor: Membership) -> set[str]:
    """Roles `actor` may add, change or revoke: head TAs manage TAs and students
    only, so nobody can hand out more power than the instructor gave them."""
    if actor.role == Role.INSTRUCTOR:
        return set(Role.values)
    if actor.role == Role.HEAD_TA:
        return {Role.TA, Role.STUDENT}
    return set()


def _role_refusal(actor: Membership, role: str) -> str | None:
    if role in roles_assignable(actor):
        return None
    if actor.role == Role.HEAD_TA:
        return "Only instructors may add or change instructors and head TAs."
    return "Your role in this course may not change the roster."


def role_parse(value: str) -> str | None:
    """'Head TA', 'head-ta' and 'HEAD_TA' all mean head_ta; None if not a role."""
    key = "_".join(value.strip().lower().replace("-", " ").split())
    return key if key in Role.values else None


def roster_actor(*, user, course_id: int, action: Action) -> Membership:
    """The user's membership if they may `action` on this course's roster.

    Not a member → 404 (we do not confirm the course exists); a member whose
    role does not allow it → 403. Shared by the pages and the API.
    """
    actor = membership_get_active(user=user, course_id=course_id)
    if actor is None:
        raise Http404("No such course.")
    if not membership_may(actor=actor, action=Action.VIEW_ROSTER):
        raise PermissionDenied("Only course staff see the roster.")
    if not membership_may(actor=actor, action=action):
        raise PermissionDenied("Your role in this course does not allow changing the roster.")
    return actor


def roster_member_get(*, course_id: int, membership_id: int) -> Membership:
    member = Membership.objects.filter(pk=membership_id, course_id=course_id).first()
    if member is None:
        raise Http404("No such member.")
    return member


# --- sections --------------------------------------------------------------


def section_create(*, course: Course, name: str) -> Section:
    name = " ".join(name.split())
    if not name:
        raise RosterError({"name": "Give the section a name."})
    if len(name) > SECTION_MAX:
        raise RosterError({"name": f"At most {SECTION_MAX} characters."})
    existing = course.sections.filter(name__iexact=name).first()
    if existing is not None:
        raise RosterError({"name": f"Section “{existing.name}” already exists."})
    try:
        with transaction.atomic():
            return Section.objects.create(course=course, name=name)
    except IntegrityError:
        raise RosterError({"name": f"Section “{name}” already exists."}) from None


def _sections_by_key(course: Course) -> dict[str, str]:
    return {s.lower(): s for s in course.sections.values_list("name", flat=True)}


def _section_unknown(course: Course, value: str, sections: dict[str, str]) -> str:
    if not sections:
        return (f"Section “{value}” does not exist: {course.code} has no sections yet "
                "(add them on the roster page).")
    names = ", ".join(sorted(sections.values(), key=str.lower))
    return f"Section “{value}” does not exist in {course.code} (it has {names})."


# --- the list --------------------------------------------------------------

_ROLE_ORDER = Case(*[When(role=r, then=Value(i)) for i, r in enumerate(Role.values)],
                   output_field=IntegerField())


def roster_list(*, course: Course, section: str = "", status: str = "") -> QuerySet[Membership]:
    """Members, staff first, filtered by section ("-" = none) and status."""
    members = Membership.objects.filter(course=course)
    if section == "-":
        members = members.filter(section="")
    elif section:
        members = members.filter(section__iexact=section)
    if status:
        members = members.filter(status=status)
    return members.select_related("invited_by").order_by(_ROLE_ORDER, "section", "email")


def roster_counts(*, course: Course) -> dict[str, int]:
    """How many members are in each status, in one query."""
    counts = {s: 0 for s in Status.values}
    for row in (Membership.objects.filter(course=course).values("status")
                .annotate(n=Count("pk")).order_by()):
        counts[row["status"]] = row["n"]
    return counts


# --- one person ------------------------------------------------------------


def _email_clean(value: str) -> tuple[str, str | None]:
    email = value.strip()
    if not email:
        return email, "Email is missing."
    try:
        validate_email(email)
    except ValidationError:
        return email, f"“{email}” is not a valid email address."
    return email, None


def membership_invite(*, course: Course, actor: Membership, email: str, name: str = "",
                      section: str = "", role: str = Role.STUDENT) -> Membership:
    """Put one person on the roster as invited and email them the invitation.

    They join when they sign in with this email (membership_claim_invitations).
    """
    errors: dict[str, str] = {}
    email, problem = _email_clean(email)
    if problem:
        errors["email"] = problem
    elif (existing := Membership.objects.filter(course=course, email__iexact=email)
          .first()) is not None:
        errors["email"] = (f"{existing.email} was revoked; re-invite them from the roster."
                           if existing.status == Status.REVOKED else
                           f"{existing.email} is already on the roster "
                           f"({existing.get_status_display().lower()}).")
    name = " ".join(name.split())
    if len(name) > NAME_MAX:
        errors["name"] = f"At most {NAME_MAX} characters."
    parsed = role_parse(role or Role.STUDENT)
    if parsed is None:
        errors["role"] = f"“{role}” is not a role; use {ROLE_WORDS}."
    elif refusal := _role_refusal(actor, parsed):
        errors["role"] = refusal
    section = section.strip()
    if section:
        sections = _sections_by_key(course)
        if section.lower() not in sections:
            errors["section"] = _section_unknown(course, section, sections)
        else:
            section = sections[section.lower()]
    if errors:
        raise RosterError(errors)
    try:
        with transaction.atomic():
            member = Membership.objects.create(
                course=course, email=email, name=name, section=section, role=parsed,
                status=Status.INVITED, invited_by=actor.user, invited_at=timezone.now())
            _invitations_queue_on_commit([member.pk])
    except IntegrityError:
        raise RosterError({"email": f"{email} is already on the roster."}) from None
    return member


def membership_reinvite(*, membership: Membership, actor: Membership) -> Membership:
    """Send the invitation again; a revoked member becomes invited again."""
    if membership.status == Status.ACTIVE:
        raise RosterError({"status": f"{membership.email} has already joined."})
    if refusal := _role_refusal(actor, membership.role):
        raise RosterError({"role": refusal})
    with transaction.atomic():
        changed = (Membership.objects
                   .filter(pk=membership.pk, status__in=[Status.INVITED, Status.REVOKED])
                   .update(status=Status.INVITED, invited_at=timezone.now(),
                           invited_by=actor.user, revoked_at=None))
        if not changed:
            raise RosterError({"status": f"{membership.email} has already joined."})
        _invitations_queue_on_commit([membership.pk])
    membership.refresh_from_db()
    return membership


def membership_revoke(*, membership: Membership, actor: Membership) -> Membership:
    """Take the course away from a member: they can no longer use it, and (through
    the `membership_revoked` signal, in the same transaction) their running
    workspaces stop. Revoking twice changes nothing the second time."""
    if membership.pk == actor.pk:
        raise RosterError({"status": "You cannot revoke your own membership."})
    if refusal := _role_refusal(actor, membership.role):
        raise RosterError({"role": refusal})
    with transaction.atomic():
        changed = (Membership.objects
                   .filter(pk=membership.pk, status__in=[Status.INVITED, Status.ACTIVE])
                   .update(status=Status.REVOKED, revoked_at=timezone.now()))
        membership.refresh_from_db()
        if changed:
            membership_revoked.send(sender=Membership, membership=membership, actor=actor.user)
    return membership


# --- invitations -----------------------------------------------------------


def _invitations_queue_on_commit(membership_ids: list[int]) -> None:
    from courses import tasks  # the task module imports this one

    def queue():
        for membership_id in membership_ids:
            tasks.membership_invitation_send_task.delay(membership_id)

    transaction.on_commit(queue)


def invitation_send(*, membership_id: int) -> bool:
    """Email the latest invitation unless it already went out; True if sent.

    The claim (sent_at set where it is older than invited_at) is a
    compare-and-swap, so two workers running the task send one email.
    """
    member = (Membership.objects.select_related("course", "invited_by")
              .filter(pk=membership_id, status=Status.INVITED).first())
    if member is None or member.invited_at is None:
        return False
    previous, now = member.invitation_sent_at, timezone.now()
    claimed = (Membership.objects
               .filter(pk=member.pk, status=Status.INVITED, invited_at=member.invited_at)
               .filter(Q(invitation_sent_at__isnull=True)
                       | Q(invitation_sent_at__lt=member.invited_at))
               .update(invitation_sent_at=now))
    if not claimed:
        return False
    try:
        _invitation_message(member).send()
    except Exception:
        Membership.objects.filter(pk=member.pk, invitation_sent_at=now).update(
            invitation_sent_at=previous)
        raise
    return True


def _inviter_name(member: Membership) -> str:
    inviter = member.invited_by
    if inviter is None:
        return f"The staff of {member.course.code}"
    on_roster = (Membership.objects.filter(course_id=member.course_id, user=inviter)
                 .exclude(name="").values_list("name", flat=True).first())
    name = on_roster or inviter.get_full_name()
    return f"{name} ({inviter.email})" if name else inviter.email


def _invitation_message(member: Membership) -> EmailMessage:
    course = member.course
    context = {"member": member, "course": course, "inviter": _inviter_name(member),
               "sign_in_url": settings.SITE_URL.rstrip("/") + reverse("account_login")}
    subject = f"You are invited to {course.title} ({course.code}) on Lens"
    body = render_to_string("courses/email/invitation.txt", context)
    reply_to = [member.invited_by.email] if member.invited_by and member.invited_by.email else []
    return EmailMessage(subject=subject, body=body, to=[member.email], reply_to=reply_to)


# --- CSV import ------------------------------------------------------------


@dataclass(frozen=True)
class RowError:
    row: int  # the line in the file; the header is line 1
    field: str
    message: str

    def __str__(self) -> str:
        return f"Row {self.row}, {self.field}: {self.message}"


@dataclass
class PreviewRow:
    row: int
    email: str
    name: str
    section: str
    role: str
    outcome: str = ""  # new, unchanged, changed, revoked, error
    changes: list[str] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    membership: Membership | None = None

    OUTCOMES = {"new": "New: will be invited", "unchanged": "Already a member, unchanged",
                "changed": "Already a member, will be updated",
                "revoked": "Revoked: left as is (re-invite from the roster)",
                "error": "Error"}

    @property
    def outcome_display(self) -> str:
        return self.OUTCOMES[self.outcome]


@dataclass
class ImportPreview:
    rows: list[PreviewRow] = field(default_factory=list)
    file_error: str = ""

    @property
    def errors(self) -> list[RowError]:
        return [e for r in self.rows for e in r.errors]

    @property
    def ok(self) -> bool:
        return not self.file_error and not self.errors

    @property
    def counts(self) -> dict[str, int]:
        tally = Counter(r.outcome for r in self.rows)
        return {key: tally.get(key, 0) for key in PreviewRow.OUTCOMES}

    @property
    def digest(self) -> str:
        """Fingerprint of what the commit would do; it changes when the roster does."""
        plan = "\n".join(f"{r.row}|{r.outcome}|{r.email.lower()}|{r.name}|{r.section}|{r.role}|"
                         + ";".join(r.changes) for r in self.rows)
        return hashlib.sha256(f"{self.file_error}\n{plan}".encode()).hexdigest()


@dataclass(frozen=True)
class ImportResult:
    created: int
    updated: int
    unchanged: int
    revoked: int


class ImportRefused(Exception):
    """The file has errors; nothing was imported. `preview` says which."""

    def __init__(self, preview: ImportPreview, message: str = ""):
        super().__init__(message or preview.file_error
                         or f"{len(preview.errors)} rows have errors; nothing was imported.")
        self.preview = preview


class ImportStale(ImportRefused):
    """The roster changed between the preview and the commit; review it again."""


class _FileProblem(Exception):
    pass


def too_big_message(size: int) -> str:
    return (f"The file is {size / 1_000_000:.1f} MB; Lens imports at most "
            f"{MAX_BYTES / 1_000_000:.0f} MB and {MAX_ROWS:,} rows at a time. "
            "Split it into smaller files.")


def _decode(data: bytes) -> str:
    if len(data) > MAX_BYTES:
        raise _FileProblem(too_big_message(len(data)))
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise _FileProblem(f"The file is not UTF-8 text (line {line} has bytes that are not "
                           "UTF-8). Save it as “CSV UTF-8” and upload it again.") from None


def _records(text: str):
    """(line number, cells) for each non-blank record; line numbers count blank lines."""
    reader = csv.reader(io.StringIO(text, newline=""))
    line = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise _FileProblem(f"Line {reader.line_num} cannot be read as CSV ({exc}).") from None
        start, line = line, reader.line_num + 1
        if any(c.strip() for c in cells):
            yield start, [c.strip() for c in cells]


def _columns(line: int, cells: list[str]) -> list[str]:
    columns = [c.lstrip("\ufeff").strip().lower() for c in cells]
    found = ",".join(cells)
    found = found if len(found) <= 80 else found[:77] + "…"
    problem = ""
    if any("@" in c for c in columns):
        problem = "It looks like a data row: add the header line first."
    elif unknown := [c for c in columns if c and c not in COLUMNS]:
        problem = "Unknown column" + ("s " if len(unknown) > 1 else " ") + ", ".join(
            f"“{c}”" for c in unknown) + "."
    elif twice := sorted({c for c in columns if c and columns.count(c) > 1}):
        problem = "Column " + ", ".join(f"“{c}”" for c in twice) + " appears twice."
    elif "email" not in columns:
        problem = "There is no “email” column."
    if problem:
        raise _FileProblem(f"The first line must be the header {HEADER_HINT}; line {line} is "
                           f"“{found}”. {problem}")
    return columns


def _parse(data: bytes) -> tuple[list[str], list[tuple[int, dict[str, str], int]]]:
    """The columns, and (line, values by column, how many values) per row."""
    records = _records(_decode(data))
    first = next(records, None)
    if first is None:
        raise _FileProblem(f"The file is empty; it needs the header {HEADER_HINT} and a row "
                           "per person.")
    columns = _columns(*first)
    rows = []
    for line, cells in records:
        if len(rows) == MAX_ROWS:
            raise _FileProblem(f"The file has more than {MAX_ROWS:,} rows; Lens imports at most "
                               f"{MAX_ROWS:,} at a time. Split it into smaller files.")
        width = len(cells) if any(cells[len(columns):]) else len(columns)
        rows.append((line, dict(zip(columns, cells, strict=False)), width))
    if not rows:
        raise _FileProblem("The file has a header but no rows under it.")
    return columns, rows


def roster_import_preview(*, course: Course, actor: Membership, data: bytes) -> ImportPreview:
    """What importing `data` would do, row by row, without changing anything."""
    try:
        columns, parsed = _parse(data)
    except _FileProblem as problem:
        return ImportPreview(file_error=str(problem))
    sections = _sections_by_key(course)
    existing = {m.email.lower(): m for m in Membership.objects.filter(course=course)}
    seen: dict[str, int] = {}
    preview = ImportPreview()
    for line, values, width in parsed:
        row = PreviewRow(row=line, email=values.get("email", ""),
                         name=" ".join(values.get("name", "").split()),
                         section=values.get("section", ""), role=Role.STUDENT)
        preview.rows.append(row)

        def fail(field_name: str, message: str, row=row, line=line) -> None:
            row.errors.append(RowError(line, field_name, message))

        if width > len(columns):
            fail("row", f"It has {width} values but the header has "
                        f"{len(columns)} columns (put quotes around a value with a comma).")
        email, problem = _email_clean(row.email)
        key = email.lower()
        if problem:
            fail("email", problem)
        elif key in seen:
            fail("email", f"{email} is already on row {seen[key]}.")
        else:
            seen[key] = line
        role_given = values.get("role", "")
        if role_given:
            parsed_role = role_parse(role_given)
            if parsed_role is None:
                fail("role", f"“{role_given}” is not a role; use {ROLE_WORDS}.")
            else:
                row.role = parsed_role
        if len(row.name) > NAME_MAX:
            fail("name", f"It is longer than {NAME_MAX} characters.")
        if row.section:
            if row.section.lower() in sections:
                row.section = sections[row.section.lower()]
            else:
                fail("section", _section_unknown(course, row.section, sections))
        member = existing.get(key) if not row.errors else None
        if member is not None:
            row.membership = member
            _compare(row, member, actor, role_given=bool(role_given), fail=fail)
        elif not row.errors and (refusal := _role_refusal(actor, row.role)):
            fail("role", refusal)
        if row.errors:
            row.outcome = "error"
        elif not row.outcome:
            row.outcome = "new"
    return preview


def _compare(row: PreviewRow, member: Membership, actor: Membership, *, role_given: bool,
             fail) -> None:
    """An email already on the roster: unchanged, changed (name, section) or an error.

    A role in the file that differs from the member's is an error rather than
    a change, so an import never promotes or demotes anyone by accident.
    """
    if member.status == Status.REVOKED:
        row.outcome = "revoked"
        return
    if role_given and row.role != member.role:
        fail("role", f"{member.email} is already in the course as "
                     f"{member.get_role_display()}; change roles on the roster page.")
        return
    row.role = member.role
    if row.name and row.name != member.name:
        row.changes.append(f"name “{member.name or '—'}” → “{row.name}”")
    if row.section and row.section != member.section:
        row.changes.append(f"section “{member.section or '—'}” → “{row.section}”")
    if row.changes and (refusal := _role_refusal(actor, member.role)):
        fail("role", refusal)
        return
    row.outcome = "changed" if row.changes else "unchanged"


_STALE = "The roster changed since the preview; check the new preview and import again."


def _import_write(*, course: Course, actor: Membership,
                  preview: ImportPreview) -> tuple[list[Membership], list[Membership]]:
    now = timezone.now()
    created = Membership.objects.bulk_create([
        Membership(course=course, email=r.email, name=r.name, section=r.section, role=r.role,
                   status=Status.INVITED, invited_by=actor.user, invited_at=now)
        for r in preview.rows if r.outcome == "new"])
    changed = []
    for r in preview.rows:
        if r.outcome == "changed":
            r.membership.name = r.name or r.membership.name
            r.membership.section = r.section or r.membership.section
            changed.append(r.membership)
    Membership.objects.bulk_update(changed, ["name", "section"])
    _invitations_queue_on_commit([m.pk for m in created])
    return created, changed


def roster_import_commit(*, course: Course, actor: Membership, data: bytes,
                         expected_digest: str = "") -> ImportResult:
    """Import `data` if every row is clean, or nothing at all.

    The preview is recomputed here, with the course row locked so two imports
    of the same course take turns. `expected_digest` (from the preview the
    person looked at) makes a commit refuse when the outcome would differ.
    """
    try:
        with transaction.atomic():
            Course.objects.select_for_update().filter(pk=course.pk).values_list("pk").first()
            preview = roster_import_preview(course=course, actor=actor, data=data)
            if not preview.ok:
                raise ImportRefused(preview)
            if expected_digest and expected_digest != preview.digest:
                raise ImportStale(preview, _STALE)
            created, changed = _import_write(course=course, actor=actor, preview=preview)
    except IntegrityError:
        # Someone added one of these people one by one in the same instant.
        raise ImportStale(roster_import_preview(course=course, actor=actor, data=data),
                          _STALE) from None
    counts = preview.counts
    return ImportResult(created=len(created), updated=len(changed),
                        unchanged=counts["unchanged"], revoked=counts["revoked"])
