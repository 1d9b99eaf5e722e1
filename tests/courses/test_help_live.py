"""Live help queue and student panels, through the real ASGI app and Redis."""

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async

from courses import help_queue as queue
from courses import inbox
from courses.models import Membership
from tests.factories import CourseFactory, MembershipFactory, UserFactory
from tests.provisioning.test_consumers import communicator, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ta(course):
    return MembershipFactory(course=course, role=Membership.Role.TA, user=UserFactory(
        username="priya", first_name="Priya", last_name="Sharma"))


async def _watch(path, cookie, change):
    comm = communicator(path, cookie)
    connected, _ = await comm.connect()
    assert connected
    await database_sync_to_async(change)()
    message = await comm.receive_from(timeout=5)
    await comm.disconnect()
    return message


async def _refused(path, cookie):
    comm = communicator(path, cookie)
    connected, code = await comm.connect()
    await comm.disconnect()
    return connected, code


def test_a_new_request_appears_in_the_ta_s_open_queue(client, course, ta, student):
    def ask():
        queue.help_request_open(actor=student, summary="my training crashes")

    html = async_to_sync(_watch)(f"/ws/courses/{course.pk}/help/", session_cookie(client, ta),
                                 ask)

    assert f'id="help-queue-{course.pk}"' in html and 'hx-swap-oob="true"' in html
    assert "my training crashes" in html and "Claim" in html


def test_the_queue_socket_refuses_students_other_courses_and_anonymous(client, course,
                                                                       student):
    path = f"/ws/courses/{course.pk}/help/"
    elsewhere = MembershipFactory(course=CourseFactory(), role=Membership.Role.TA)

    assert async_to_sync(_refused)(path, session_cookie(client, student)) == (False, 4403)
    assert async_to_sync(_refused)(path, session_cookie(client, elsewhere)) == (False, 4403)
    assert async_to_sync(_refused)(path, None) == (False, 4403)


def test_the_student_s_dashboard_shows_the_claim_live(client, course, ta, student):
    request = queue.help_request_open(actor=student, summary="my training crashes")

    html = async_to_sync(_watch)(f"/ws/members/{student.pk}/", session_cookie(client, student),
                                 lambda: queue.help_request_claim(request=request, actor=ta))

    assert f'id="help-{student.pk}"' in html and 'hx-swap-oob="true"' in html
    assert "Priya Sharma is on it" in html


def test_a_new_message_appears_on_the_student_s_open_dashboard(client, course, ta, student):
    def write():
        inbox.message_send(sender=ta, recipient=student, subject="Your GPU is idle", body="b")

    html = async_to_sync(_watch)(f"/ws/members/{student.pk}/", session_cookie(client, student),
                                 write)

    assert f'id="inbox-{student.pk}"' in html and "1 unread" in html
    assert "Your GPU is idle" in html
