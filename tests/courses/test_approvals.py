"""Requests and approvals: a student asks for a template that needs approval or
for more budget; staff approve (with an expiry) or deny; the student hears
about it; an expired approval stops applying."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from billing import ledger
from billing.models import LedgerEntry
from courses import approvals
from courses.models import Approval, Membership
from courses.policy import Action, membership_may
from courses.tasks import approvals_expire_task
from provisioning.models import Workspace
from tests.factories import (
    ApprovedTemplateFactory,
    CourseFactory,
    MembershipFactory,
    TemplateFactory,
)

GPU = "gpu-ml-workstation"


@pytest.fixture
def gpu(course, prices):
    """Approved for the course, but only for students an instructor lets in."""
    return ApprovedTemplateFactory(
        course=course, requires_approval=True, note="final project only",
        template=TemplateFactory(slug=GPU, name="GPU ML workstation",
                                 instance_type="g4dn.xlarge"))


@pytest.fixture
def prof(course):
    return MembershipFactory(course=course, role=Membership.Role.INSTRUCTOR,
                             user__username="prof", name="Dr. Prof")


@pytest.fixture
def head_ta(course):
    return MembershipFactory(course=course, role=Membership.Role.HEAD_TA, user__username="alex")


@pytest.fixture
def ta(course):
    return MembershipFactory(course=course, role=Membership.Role.TA, user__username="priya")


@pytest.fixture
def sent(django_capture_on_commit_callbacks):
    """Run what waits for the commit (the emails) when the block ends."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def ask(client, member, **data):
    client.force_login(member.user)
    return client.post(f"/api/courses/{member.course_id}/approvals/",
                       {"kind": "template", "template_slug": GPU, "reason": "final project",
                        **data}, content_type="application/json")


def decide(client, member, approval, **data):
    client.force_login(member.user)
    return client.post(f"/api/courses/{approval.course_id}/approvals/{approval.pk}/decide/",
                       {"decision": "approve", **data}, content_type="application/json")


def launch(client, member, slug=GPU, name="fp"):
    client.force_login(member.user)
    return client.post("/api/workspaces/", {"course": member.course_id, "template": slug,
                                            "name": name}, content_type="application/json")


def pending(member, slug=GPU, **fields):
    return Approval.objects.create(course_id=member.course_id, membership=member,
                                   kind="template", template_slug=slug, reason="project",
                                   **fields)


# --- the whole path ------------------------------------------------------------


def test_approval_with_expiry(client, student, approved, gpu, prof, sent):
    refused = launch(client, student)
    assert refused.status_code == 403
    assert "needs an instructor's approval" in refused.json()["detail"]

    asked = ask(client, student, reason="Final project: fine-tuning a ResNet")
    assert asked.status_code == 201 and asked.json()["status"] == "pending"
    approval = Approval.objects.get()
    expires = timezone.now() + timedelta(hours=2)
    with sent():
        decided = decide(client, prof, approval, expires_at=expires.isoformat(),
                         note="Until the demo")
    assert decided.status_code == 200 and decided.json()["status"] == "approved"

    allowed = launch(client, student)
    assert allowed.status_code == 201, allowed.json()
    # Time passes: the approval's moment comes. It stops applying at once, before
    # the sweep marks it expired.
    Approval.objects.filter(pk=approval.pk).update(expires_at=timezone.now()
                                                   - timedelta(seconds=1))
    again = launch(client, student, name="fp2")
    assert again.status_code == 403
    assert "needs an instructor's approval" in again.json()["detail"]

    with sent():
        assert approvals_expire_task.delay().get() == 1
    approval.refresh_from_db()
    assert approval.status == Approval.Status.EXPIRED
    assert launch(client, student, name="fp3").status_code == 403
    # The workspace launched under the approval keeps running.
    assert Workspace.objects.get(name="fp").state not in {"stopping", "stopped", "terminated"}
    subjects = [m.subject for m in mail.outbox]
    assert subjects == [f"CS229: your request for {GPU} was approved",
                        f"CS229: your approval for {GPU} expired"]


def test_the_expire_sweep_leaves_unexpired_and_open_ended_approvals_alone(
        student, other_student, gpu):
    now = timezone.now()
    pending(student, status="approved", expires_at=now + timedelta(minutes=5))
    pending(other_student, status="approved", expires_at=None)

    assert approvals.approvals_expire(now=now) == 0
    assert approvals.approvals_expire(now=now + timedelta(minutes=6)) == 1
    assert approvals.approvals_expire(now=now + timedelta(minutes=6)) == 0  # runs twice, once
    assert set(Approval.objects.values_list("status", flat=True)) == {"approved", "expired"}


def test_an_expiry_is_given_and_shown_in_the_course_s_time_zone(client, student, gpu, prof):
    approval = pending(student)
    client.force_login(prof.user)

    response = client.post(f"/courses/{student.course_id}/approvals/{approval.pk}/decide/",
                           {f"a{approval.pk}-decision": "approve",
                            f"a{approval.pk}-expires_at": "2027-01-15T09:00",
                            f"a{approval.pk}-note": "for the final project"})

    assert response.status_code == 302
    approval.refresh_from_db()
    assert approval.expires_at == datetime(2027, 1, 15, 14, 0, tzinfo=UTC)  # 09:00 in New York
    client.force_login(student.user)
    html = client.get(f"/courses/{student.course_id}/requests/").content.decode()
    assert "Until Jan 15, 2027, 09:00 (America/New_York)" in html
    assert "for the final project" in html


def test_an_expiry_in_the_past_is_refused_next_to_the_field(client, student, gpu, prof):
    approval = pending(student)
    client.force_login(prof.user)

    response = client.post(f"/courses/{student.course_id}/approvals/{approval.pk}/decide/",
                           {f"a{approval.pk}-decision": "approve",
                            f"a{approval.pk}-expires_at": "2020-01-01T09:00"},
                           HTTP_HX_REQUEST="true")

    assert response.status_code == 400
    assert 'data-field="expires_at">The expiry must be in the future' in response.content.decode()
    assert Approval.objects.get().status == "pending"
    api = decide(client, prof, approval, expires_at="2020-01-01T09:00")
    assert api.status_code == 400 and "expires_at" in api.json()


# --- asking --------------------------------------------------------------------


def test_a_student_asks_from_the_page_and_sees_the_request_with_its_status(
        client, student, gpu):
    client.force_login(student.user)
    page = client.get(f"/courses/{student.course_id}/requests/").content.decode()
    assert GPU in page and "$0.5260" in page and "$12.62" in page  # $/hour and $/day
    assert "final project only" in page

    response = client.post(f"/courses/{student.course_id}/requests/",
                           {"kind": "template", "template_slug": GPU,
                            "reason": "CNN for the final project"}, follow=True)

    html = response.content.decode()
    assert f"Asked for {GPU}" in html
    assert 'data-status="pending"' in html and "CNN for the final project" in html


def test_a_second_pending_request_for_the_same_thing_is_refused_with_a_field_error(
        client, student, gpu):
    assert ask(client, student).status_code == 201

    again = ask(client, student)
    page = client.post(f"/courses/{student.course_id}/requests/",
                       {"kind": "template", "template_slug": GPU, "reason": "please"})

    assert again.status_code == 400
    assert "You already asked for" in again.json()["template_slug"][0]
    assert page.status_code == 400
    assert 'data-field="template_slug">You already asked for' in page.content.decode()
    assert Approval.objects.count() == 1


def test_a_request_needs_a_reason_and_a_template_that_is_approved_on_request(
        client, student, approved, gpu):
    no_reason = ask(client, student, reason="  ")
    not_on_request = ask(client, student, template_slug="ml-cpu-student")
    budget_zero = ask(client, student, kind="budget", amount="0", template_slug="")

    assert no_reason.status_code == 400 and "reason" in no_reason.json()
    assert not_on_request.status_code == 400
    assert f"those are: {GPU}" in not_on_request.json()["template_slug"][0]
    assert budget_zero.json()["amount"] == ["Ask for more than $0."]
    assert not Approval.objects.exists()


def test_a_member_who_already_has_access_is_told_so(client, student, gpu):
    pending(student, status="approved")

    response = ask(client, student)

    assert response.json()["template_slug"] == [f"You already have access to {GPU}."]


def test_a_student_withdraws_their_own_pending_request_only(client, student, other_student, gpu):
    mine, theirs = pending(student), pending(other_student)
    client.force_login(student.user)

    ok = client.post(f"/api/courses/{student.course_id}/approvals/{mine.pk}/withdraw/")
    not_mine = client.post(f"/api/courses/{student.course_id}/approvals/{theirs.pk}/withdraw/")
    twice = client.post(f"/api/courses/{student.course_id}/approvals/{mine.pk}/withdraw/")

    assert ok.status_code == 200 and ok.json()["status"] == "withdrawn"
    assert not_mine.status_code == 404  # another student's request is not visible
    assert twice.status_code == 409
    assert ask(client, student).status_code == 201  # may ask again


# --- deciding ------------------------------------------------------------------


def test_a_denial_is_emailed_and_shown_on_the_dashboard_until_dismissed(
        client, student, approved, gpu, prof, sent):
    approval = pending(student)

    with sent():
        response = decide(client, prof, approval, decision="deny", note="Use the CPU template")

    assert response.status_code == 200 and response.json()["status"] == "denied"
    assert [m.to for m in mail.outbox] == [[student.email]]
    assert "was denied" in mail.outbox[0].body and "Use the CPU template" in mail.outbox[0].body
    client.force_login(student.user)
    home = client.get("/").content.decode()
    assert 'data-testid="request-notices"' in home and "<strong>denied</strong>" in home
    assert client.post(f"/courses/{student.course_id}/notices/dismiss/",
                       HTTP_HX_REQUEST="true").status_code == 200
    assert 'data-testid="request-notices"' not in client.get("/").content.decode()
    assert launch(client, student).status_code == 403


def test_the_email_goes_out_once_even_if_the_task_runs_twice(student, gpu, prof, sent):
    approval = pending(student)
    with sent():
        approvals.approval_decide(approval=approval, actor=prof, approve=True)

    assert approvals.approval_notify(approval_id=approval.pk) is False
    assert len(mail.outbox) == 1


def test_a_request_decided_by_someone_else_first_is_a_conflict(client, student, gpu, prof):
    approval = pending(student)
    assert decide(client, prof, approval, decision="deny").status_code == 200

    late = decide(client, prof, approval)

    assert late.status_code == 409
    assert Approval.objects.get().status == "denied"


def test_the_dashboard_marks_a_template_approved_for_the_student(client, student, approved, gpu,
                                                                 prof):
    client.force_login(student.user)
    assert "needs approval</em> (<a href" in client.get("/").content.decode()
    approvals.approval_decide(approval=pending(student), actor=prof, approve=True,
                              expires_at=datetime(2027, 1, 15, 14, 0, tzinfo=UTC))

    html = client.get("/").content.decode()

    assert "approved for you until Jan 15, 09:00" in html


# --- budget --------------------------------------------------------------------


def test_a_budget_increase_raises_the_cap_and_its_expiry_lowers_it_again(
        client, student, prof, sent):
    asked = ask(client, student, kind="budget", amount="25.00", template_slug="",
                reason="Hyperparameter sweep")
    approval = Approval.objects.get(pk=asked.json()["id"])
    expires = timezone.now() + timedelta(days=7)

    decided = decide(client, prof, approval, expires_at=expires.isoformat())

    assert decided.json()["granted_amount"] == "25.00"
    student.refresh_from_db()
    assert ledger.member_cap(student) == Decimal("75.00")  # the course default was $50
    assert client.get(f"/api/members/{student.pk}/budget/").json()["cap"] == "75.00"

    with sent():
        assert approvals.approvals_expire(now=expires + timedelta(seconds=1)) == 1
    student.refresh_from_db()
    assert student.budget_cap == Decimal("50.00")
    caps = list(LedgerEntry.objects.filter(kind="cap").order_by("pk")
                .values_list("amount", "actor__username"))
    assert caps == [(Decimal("75.000000"), "prof"), (Decimal("50.000000"), None)]
    assert mail.outbox[-1].subject == "CS229: your approval for $25.00 more budget expired"


def test_a_budget_grant_counts_on_top_of_a_cap_changed_in_between(student, prof):
    approval = Approval.objects.create(course_id=student.course_id, membership=student,
                                       kind="budget", amount=Decimal("10"), reason="x")
    approvals.approval_decide(approval=approval, actor=prof, approve=True,
                              expires_at=timezone.now() + timedelta(hours=1))
    student.refresh_from_db()
    from lens.budgets import member_cap_change

    member_cap_change(membership=student, cap=Decimal("100"), actor=prof.user, reason="more",
                      key="k1")
    approvals.approvals_expire(now=timezone.now() + timedelta(hours=2))

    student.refresh_from_db()
    assert student.budget_cap == Decimal("90.00")  # only the grant is taken back


# --- who may ------------------------------------------------------------------


def test_a_head_ta_decides_only_when_the_course_allows_it(client, student, gpu, head_ta):
    approval = pending(student)

    refused = decide(client, head_ta, approval)
    head_ta.course.head_ta_may_approve = True
    head_ta.course.save()
    allowed = decide(client, head_ta, approval)

    assert refused.status_code == 403
    assert allowed.status_code == 200 and allowed.json()["decided_by"] == head_ta.email


@pytest.mark.parametrize("who", ["ta", "student", "self"])
def test_tas_and_students_may_not_decide(client, course, student, other_student, gpu, ta,
                                         who):
    course.head_ta_may_approve = True
    course.save()
    approval = pending(student)
    actor = {"ta": ta, "student": other_student, "self": student}[who]
    # Another student does not even see the request; the TA and its owner do.
    expected = 404 if who == "student" else 403

    assert decide(client, actor, approval).status_code == expected
    client.force_login(actor.user)
    page = client.post(f"/courses/{course.pk}/approvals/{approval.pk}/decide/",
                       {f"a{approval.pk}-decision": "approve"})
    assert page.status_code == expected
    assert Approval.objects.get().status == "pending"


def test_an_instructor_does_not_decide_their_own_request(prof, course):
    own = Approval.objects.create(course=course, membership=prof, kind="budget",
                                  amount=Decimal("5"), reason="x")
    with pytest.raises(approvals.PermissionDenied):
        approvals.approval_decide(approval=own, actor=prof, approve=True)


def test_outsiders_and_other_courses_staff_see_nothing(client, student, gpu):
    approval = pending(student)
    elsewhere = MembershipFactory(course=CourseFactory(), role=Membership.Role.INSTRUCTOR)
    outsider = MembershipFactory(course=CourseFactory()).user
    course_id = student.course_id

    for user in (elsewhere.user, outsider):
        client.force_login(user)
        assert client.get(f"/courses/{course_id}/approvals/").status_code == 404
        assert client.get(f"/courses/{course_id}/requests/").status_code == 404
        assert client.get(f"/api/courses/{course_id}/approvals/").status_code == 404
        assert client.post(f"/api/courses/{course_id}/approvals/{approval.pk}/decide/",
                           {"decision": "approve"}).status_code == 404
    # An instructor cannot reach a request through their own course's URL either.
    client.force_login(elsewhere.user)
    assert client.post(f"/api/courses/{elsewhere.course_id}/approvals/{approval.pk}/decide/",
                       {"decision": "approve"}).status_code == 404
    assert Approval.objects.get().status == "pending"


def test_students_do_not_see_the_staff_list_and_the_api_shows_them_their_own(
        client, student, other_student, gpu, ta):
    pending(student), pending(other_student)
    client.force_login(student.user)

    assert client.get(f"/courses/{student.course_id}/approvals/").status_code == 403
    mine = client.get(f"/api/courses/{student.course_id}/approvals/").json()
    client.force_login(ta.user)
    staff = client.get(f"/api/courses/{student.course_id}/approvals/").json()
    page = client.get(f"/courses/{student.course_id}/approvals/").content.decode()

    assert [a["member"] for a in mine] == [student.email]
    assert len(staff) == 2
    assert "read-only for your role" in page and "Approve</button>" not in page


def test_the_policy_for_requests(course, student, other_student, prof, head_ta, ta):
    assert membership_may(actor=student, action=Action.REQUEST_APPROVAL)
    assert not membership_may(actor=student, action=Action.REQUEST_APPROVAL,
                              owner=other_student)
    assert membership_may(actor=prof, action=Action.DECIDE_APPROVAL, owner=student)
    assert not membership_may(actor=head_ta, action=Action.DECIDE_APPROVAL, owner=student)
    assert not membership_may(actor=ta, action=Action.DECIDE_APPROVAL, owner=student)
    assert membership_may(actor=ta, action=Action.VIEW_APPROVALS)
    assert not membership_may(actor=student, action=Action.VIEW_APPROVALS)
    student.status = Membership.Status.REVOKED
    assert not membership_may(actor=student, action=Action.REQUEST_APPROVAL)


# --- pages ---------------------------------------------------------------------


def test_the_launch_refusal_lists_what_may_be_launched_and_how_to_ask(
        client, student, approved, gpu):
    refused = launch(client, student)
    unknown = launch(client, student, slug="nope")

    detail = refused.json()["detail"]
    assert "ml-cpu-student (t3.medium, $0.0416/hour, $1.00/day)" in detail
    assert f"Needs approval first: {GPU} (g4dn.xlarge, $0.5260/hour, $12.62/day)" in detail
    assert f"Request access on the course page: /courses/{student.course_id}/requests/" in detail
    assert "Request access on the course page" in unknown.json()["detail"]


def test_the_approvals_list_query_count_does_not_grow_with_requests(
        client, course, prof, gpu, django_assert_max_num_queries):
    client.force_login(prof.user)
    for i in range(12):
        member = MembershipFactory(course=course)
        a = pending(member)
        if i % 2:
            approvals.approval_decide(approval=a, actor=prof, approve=bool(i % 4 == 1))

    # session, user, actor, pending, decided
    with django_assert_max_num_queries(5):
        response = client.get(f"/courses/{course.pk}/approvals/")

    html = response.content.decode()
    assert html.count('data-testid="pending-row"') == 6
    assert 'data-testid="pending-count">6<' in html


def test_the_course_settings_let_head_tas_decide(client, course, prof):
    course.starts_at = datetime(2026, 8, 24, 4, tzinfo=UTC)
    course.ends_at = datetime(2026, 12, 12, 4, 59, 59, tzinfo=UTC)
    course.save()
    client.force_login(prof.user)

    response = client.patch(f"/api/courses/{course.pk}/", {"head_ta_may_approve": True},
                            content_type="application/json")

    assert response.status_code == 200 and response.json()["head_ta_may_approve"] is True
    course.refresh_from_db()
    assert course.head_ta_may_approve
    page = client.get(f"/courses/{course.pk}/settings/").content.decode()
    assert 'name="head_ta_may_approve"' in page and "Head TAs may approve" in page


# --- staff hear of new requests ---------------------------------------------------


def test_a_new_request_is_emailed_once_to_whoever_decides_in_the_course(
        client, student, gpu, prof, head_ta, ta, sent):
    with sent():
        assert ask(client, student, reason="Final project: a CNN on 40k images").status_code \
            == 201
    approval = Approval.objects.get()

    assert [m.to for m in mail.outbox] == [[prof.email]]  # not the head TA, not the TA
    message = mail.outbox[0]
    assert student.display_name in message.subject and GPU in message.subject
    assert "a CNN on 40k images" in message.body
    assert f"/courses/{student.course_id}/approvals/" in message.body
    assert approvals.approval_staff_notify(approval_id=approval.pk) is False  # a second run
    assert len(mail.outbox) == 1


def test_head_tas_hear_of_requests_where_they_may_decide_them(student, gpu, prof, head_ta, sent):
    student.course.head_ta_may_approve = True
    student.course.save()
    with sent():
        approvals.approval_request(membership=student, kind="template", template_slug=GPU,
                                   reason="final project")

    assert sorted(mail.outbox[0].to) == sorted([prof.email, head_ta.email])


@pytest.mark.django_db(transaction=True)
def test_the_course_page_counter_follows_a_new_request_live(client, student, gpu, prof):
    from asgiref.sync import async_to_sync

    from tests.courses.test_help_live import _watch
    from tests.provisioning.test_consumers import session_cookie

    def ask_for_gpu():
        approvals.approval_request(membership=student, kind="template", template_slug=GPU,
                                   reason="final project")

    html = async_to_sync(_watch)(f"/ws/courses/{student.course_id}/",
                                 session_cookie(client, prof), ask_for_gpu)

    assert f'id="course-stats-{student.course_id}"' in html and 'hx-swap-oob="true"' in html
    assert 'data-testid="pending-approvals"' in html and ">1</a>" in html
