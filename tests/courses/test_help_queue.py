"""The help queue: a student asks, TAs claim (one of two simultaneous claims
wins), release and resolve; who may do what; the API; a pinned query count."""

import threading

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from courses import help_queue as queue
from courses.models import HelpRequest, Membership
from tests.factories import CourseFactory, MembershipFactory, UserFactory

Role, Status = Membership.Role, HelpRequest.Status


@pytest.fixture
def ta(course):
    return MembershipFactory(course=course, role=Role.TA, user=UserFactory(
        username="priya", first_name="Priya", last_name="Sharma"))


@pytest.fixture
def head_ta(course):
    return MembershipFactory(course=course, role=Role.HEAD_TA, user=UserFactory(
        username="alex", first_name="Alex", last_name="Thompson"))


def ask(student, summary="my training crashes", **kwargs):
    return queue.help_request_open(actor=student, summary=summary, **kwargs)


def test_a_student_asks_from_the_dashboard_and_sees_it_waiting(client, student):
    client.force_login(student.user)

    response = client.post(reverse("help-ask", args=[student.course_id]),
                           {"summary": "my training crashes", "details": "OOM at epoch 3"},
                           HTTP_HX_REQUEST="true")

    html = response.content.decode()
    assert response.status_code == 200
    assert "Waiting for a TA" in html and "my training crashes" in html
    assert "Waiting for a TA" in client.get(reverse("home")).content.decode()
    assert HelpRequest.objects.get().details == "OOM at epoch 3"


def test_one_waiting_request_at_a_time_with_a_clear_error(client, student):
    ask(student)
    client.force_login(student.user)

    response = client.post(reverse("help-ask", args=[student.course_id]),
                           {"summary": "something else"}, HTTP_HX_REQUEST="true")

    assert response.status_code == 400
    assert "You already have a request waiting" in response.content.decode()
    assert HelpRequest.objects.count() == 1


def test_an_empty_summary_is_shown_next_to_its_field(client, student):
    client.force_login(student.user)

    response = client.post(reverse("help-ask", args=[student.course_id]), {"summary": " "},
                           HTTP_HX_REQUEST="true")

    assert response.status_code == 400 and 'data-field="summary"' in response.content.decode()


def test_the_queue_shows_waiting_requests_oldest_first(client, ta, student, other_student):
    first, second = ask(student, "first"), ask(other_student, "second")
    client.force_login(ta.user)

    html = client.get(reverse("help-queue", args=[ta.course_id])).content.decode()

    assert html.index(f'id="help-request-{first.pk}"') < html.index(
        f'id="help-request-{second.pk}"')
    assert f'ws-connect="/ws/courses/{ta.course_id}/help/"' in html


def test_a_ta_claims_and_resolves_and_the_student_sees_the_note(client, ta, student):
    request = ask(student)
    client.force_login(ta.user)
    base = f"/courses/{ta.course_id}/help/{request.pk}"

    claimed = client.post(f"{base}/claim/", HTTP_HX_REQUEST="true").content.decode()
    resolved = client.post(f"{base}/resolve/", {"note": "Use batch size 32."},
                           HTTP_HX_REQUEST="true").content.decode()

    assert "Priya Sharma is helping" in claimed and "You are helping" in claimed
    assert "Nobody is waiting" in resolved
    request.refresh_from_db()
    assert request.status == Status.RESOLVED and request.resolved_by == ta.user
    client.force_login(student.user)
    home = client.get(reverse("home")).content.decode()
    assert "Resolved" in home and "Use batch size 32." in home and "Ask for help" in home


def test_the_second_of_two_claims_is_told_who_won(ta, head_ta, student):
    request = ask(student)
    stale = HelpRequest.objects.get(pk=request.pk)  # Alex's page, loaded before Priya clicks

    queue.help_request_claim(request=request, actor=ta)
    with pytest.raises(queue.HelpError) as lost:
        queue.help_request_claim(request=stale, actor=head_ta)

    assert str(lost.value) == "Priya Sharma already claimed it."
    assert lost.value.status == 409
    assert HelpRequest.objects.get().claimed_by == ta.user


@pytest.mark.django_db(transaction=True)
def test_two_tas_claiming_at_the_same_moment_exactly_one_wins(course):
    student = MembershipFactory(course=course)
    tas = [MembershipFactory(course=course, role=Role.TA) for _ in range(2)]
    request = ask(student)
    start, results = threading.Barrier(2), []

    def claim(actor):
        mine = HelpRequest.objects.get(pk=request.pk)
        start.wait()
        try:
            queue.help_request_claim(request=mine, actor=actor)
            results.append("won")
        except queue.HelpError as error:
            results.append(str(error))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=claim, args=(t,)) for t in tas]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(results)[-1] == "won" and results.count("won") == 1
    assert [r for r in results if r != "won"][0].endswith("already claimed it.")


def test_release_puts_it_back_and_the_student_can_cancel(ta, student):
    request = ask(student)
    queue.help_request_claim(request=request, actor=ta)

    queue.help_request_release(request=request, actor=ta)
    assert HelpRequest.objects.get().status == Status.OPEN
    queue.help_request_cancel(request=request, actor=student)

    assert HelpRequest.objects.get().status == Status.CANCELLED
    with pytest.raises(queue.HelpError, match="cancelled the request"):
        queue.help_request_claim(request=request, actor=ta)
    assert ask(student, "again").status == Status.OPEN  # free to ask again


# --- who may ---------------------------------------------------------------------


def test_students_get_403_on_the_queue_and_its_actions_outsiders_404(client, course, student,
                                                                     other_student):
    request = ask(student)
    elsewhere_ta = MembershipFactory(course=CourseFactory(), role=Role.TA)
    urls = [(reverse("help-queue", args=[course.pk]), "get")] + [
        (f"/courses/{course.pk}/help/{request.pk}/{verb}/", "post")
        for verb in ("claim", "release", "resolve")]
    for member, code in ((other_student, 403), (elsewhere_ta, 404)):
        client.force_login(member.user)
        for url, method in urls:
            assert getattr(client, method)(url).status_code == code, (member, url)
    assert HelpRequest.objects.get().status == Status.OPEN


def test_staff_cannot_open_requests_and_nobody_cancels_another_s(client, ta, student,
                                                                 other_student):
    client.force_login(ta.user)
    assert client.post(reverse("help-ask", args=[ta.course_id]),
                       {"summary": "x"}).status_code == 403
    request = ask(student)
    client.force_login(other_student.user)
    assert client.post(f"/courses/{student.course_id}/help/{request.pk}/cancel/") \
        .status_code == 404
    assert HelpRequest.objects.get().status == Status.OPEN


# --- API -------------------------------------------------------------------------


def test_the_api_opens_claims_and_reports_conflicts(client, ta, head_ta, student):
    course_id = student.course_id
    client.force_login(student.user)
    bad = client.post(f"/api/courses/{course_id}/help/", {"summary": ""},
                      content_type="application/json")
    made = client.post(f"/api/courses/{course_id}/help/", {"summary": "my training crashes",
                                                           "workspace_id": 999},
                       content_type="application/json")
    made = client.post(f"/api/courses/{course_id}/help/", {"summary": "my training crashes"},
                       content_type="application/json")
    again = client.post(f"/api/courses/{course_id}/help/", {"summary": "again"},
                        content_type="application/json")
    student_view = client.get(f"/api/courses/{course_id}/help/")
    rid = made.json()["id"]

    client.force_login(ta.user)
    listed = client.get(f"/api/courses/{course_id}/help/").json()
    won = client.post(f"/api/courses/{course_id}/help/{rid}/claim/")
    client.force_login(head_ta.user)
    lost = client.post(f"/api/courses/{course_id}/help/{rid}/claim/")
    resolved = client.post(f"/api/courses/{course_id}/help/{rid}/resolve/", {"note": "fixed"},
                           content_type="application/json")

    assert bad.status_code == 400 and "summary" in bad.json()
    assert made.status_code == 201 and made.json()["status"] == "open"
    assert again.status_code == 409 and "already have a request" in str(again.json())
    assert student_view.status_code == 403
    assert [r["summary"] for r in listed] == ["my training crashes"]
    assert won.status_code == 200 and won.json()["claimed_by"] == "Priya Sharma"
    assert lost.status_code == 409 and "Priya Sharma already claimed it." in str(lost.json())
    assert resolved.json()["status"] == "resolved" and resolved.json()["resolved_by"] == \
        "Alex Thompson"


def test_the_api_rejects_a_workspace_that_is_not_the_student_s(client, student):
    client.force_login(student.user)

    response = client.post(f"/api/courses/{student.course_id}/help/",
                           {"summary": "x", "workspace_id": 999},
                           content_type="application/json")

    assert response.status_code == 400 and "workspace_id" in response.json()


# --- pages' cost -------------------------------------------------------------------


@pytest.mark.parametrize("waiting", [2, 15])
def test_the_queue_page_query_count_does_not_grow_with_the_queue(client, course, ta, waiting):
    for n in range(waiting):
        request = ask(MembershipFactory(course=course), f"problem {n}")
        if n % 2:
            queue.help_request_claim(request=request, actor=ta)
    client.force_login(ta.user)

    with CaptureQueriesContext(connection) as ctx:
        response = client.get(reverse("help-queue", args=[course.pk]))

    assert response.content.decode().count('id="help-request-') == waiting
    # session, user, actor (with course), waiting requests with students and claimers
    assert len(ctx.captured_queries) == 4


def test_the_course_page_links_to_the_queue_with_the_open_count(client, course, ta, student,
                                                                other_student):
    ask(student)
    queue.help_request_claim(request=ask(other_student), actor=ta)
    client.force_login(ta.user)

    html = client.get(reverse("course-page", args=[course.pk])).content.decode()

    assert reverse("help-queue", args=[course.pk]) in html
    assert "1 waiting" in html and "1 being helped" in html
