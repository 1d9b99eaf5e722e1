"""GPU slots: a template with a capacity runs at most that many workspaces; further
launches wait in a first-come, first-served line, see their place, and start by
themselves when a slot frees."""

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.models import LedgerEntry
from courses.models import Membership
from courses.policy import Action, membership_may
from provisioning import services, slots, tasks
from provisioning.models import LaunchQueueEntry, Workspace, WorkspaceEvent
from provisioning.services import cloud_account_default
from provisioning.states import State
from tests.factories import (
    ApprovedTemplateFactory,
    CourseFactory,
    MembershipFactory,
    TemplateFactory,
)


@pytest.fixture
def gpu_lab(course, prices):
    return TemplateFactory(slug="gpu-lab", name="GPU lab", instance_type="g4dn.xlarge")


@pytest.fixture
def pool(course, gpu_lab):
    """gpu-lab approved for the course with two slots."""
    return ApprovedTemplateFactory(course=course, template=gpu_lab, capacity=2)


@pytest.fixture
def members(course):
    return [MembershipFactory(course=course, user__username=f"s{n}") for n in range(6)]


@pytest.fixture
def run_commits(django_capture_on_commit_callbacks):
    """Run what commits would trigger (tasks run eagerly, so machines come up in moto)."""
    def run(work, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return work(*args, **kwargs)
    return run


def launch(run_commits, member, name="train"):
    workspace = run_commits(services.workspace_launch, membership=member, template_slug="gpu-lab",
                            name=name, actor=member.user)
    workspace.refresh_from_db()
    return workspace


def stop(run_commits, workspace):
    run_commits(services.workspace_stop, workspace=workspace, actor=None)
    workspace.refresh_from_db()
    return workspace


def states(*workspaces):
    return [Workspace.objects.get(pk=w.pk).state for w in workspaces]


def position(workspace) -> int | None:
    found = slots.queue_statuses(pools=[(workspace.owner.course_id, workspace.template_id)])
    return found[workspace.pk][1].position if workspace.pk in found else None


# --- joining the line ------------------------------------------------------------


def test_launches_beyond_capacity_wait_in_line_in_the_order_they_came(
        run_commits, pool, members, client):
    first, second, third = (launch(run_commits, m) for m in members[:3])

    assert states(first, second, third) == [State.RUNNING, State.RUNNING, State.QUEUED]
    assert position(third) == 1
    fourth = launch(run_commits, members[3])
    assert fourth.state == State.QUEUED
    assert position(fourth) == 2
    assert not fourth.instance_id

    client.force_login(members[3].user)
    page = client.get("/").content.decode()
    assert "Waiting for a GPU slot — you are 2nd in line (2 slots, all in use)" in page
    assert "Leave the queue" in page


def test_a_queued_launch_holds_no_money_and_is_never_metered(run_commits, pool, members):
    for m in members[:2]:
        launch(run_commits, m)

    queued = launch(run_commits, members[2])

    assert not LedgerEntry.objects.filter(workspace_id=queued.pk).exists()
    assert [e.to_state for e in queued.events.all()] == [State.QUEUED]


def test_a_member_who_could_not_afford_it_is_refused_before_joining_the_line(
        run_commits, pool, members):
    for m in members[:2]:
        launch(run_commits, m)
    poor = members[2]
    Membership.objects.filter(pk=poor.pk).update(budget_cap=Decimal("0.10"))
    poor.refresh_from_db()

    with pytest.raises(services.LaunchRefused, match="Not enough budget"):
        launch(run_commits, poor)

    assert not LaunchQueueEntry.objects.exists()
    assert not Workspace.objects.filter(owner=poor).exists()


def test_the_launch_page_says_the_workspace_is_in_line(client, run_commits, pool, members):
    for m in members[:2]:
        launch(run_commits, m)
    client.force_login(members[2].user)

    response = client.post(f"/courses/{pool.course_id}/launch/",
                           {"template": "gpu-lab", "name": "big"}, HTTP_HX_REQUEST="true")

    text = response.content.decode()
    assert response.status_code == 200
    assert "is in line; it starts by itself when a slot frees" in text
    assert "you are 1st in line (2 slots, all in use)" in text


# --- admission ---------------------------------------------------------------------


def test_stopping_a_holder_admits_the_first_in_line_not_a_later_one_and_it_runs(
        run_commits, pool, members):
    holder, other = launch(run_commits, members[0]), launch(run_commits, members[1])
    third, fourth = launch(run_commits, members[2]), launch(run_commits, members[3])

    stop(run_commits, holder)

    assert states(holder, other, third, fourth) == [State.STOPPED, State.RUNNING, State.RUNNING,
                                                    State.QUEUED]
    third.refresh_from_db()
    assert third.instance_id.startswith("i-")
    assert [e.to_state for e in third.events.all()] == [State.QUEUED, State.REQUESTED,
                                                        State.PENDING, State.RUNNING]
    entry = LaunchQueueEntry.objects.get(workspace=third)
    assert entry.status == LaunchQueueEntry.Status.ADMITTED and entry.admitted_at
    assert LedgerEntry.objects.filter(workspace_id=third.pk, kind="hold").exists()
    assert position(fourth) == 1


def test_admission_is_idempotent_and_admits_nobody_while_every_slot_is_taken(
        run_commits, pool, members):
    for m in members[:2]:
        launch(run_commits, m)
    queued = launch(run_commits, members[2])

    assert slots.slots_admit(course_id=pool.course_id, template_id=pool.template_id) == []
    assert tasks.slots_admit_task.delay(pool.course_id, pool.template_id).get() == 0
    assert states(queued) == [State.QUEUED]


def test_leaving_the_queue_moves_later_ones_up_and_frees_the_name(run_commits, pool, members):
    for m in members[:2]:
        launch(run_commits, m)
    leaving, later = launch(run_commits, members[2]), launch(run_commits, members[3])

    run_commits(slots.queue_leave, workspace=leaving, actor=members[2].user)

    assert states(leaving) == [State.ARCHIVED]
    assert LaunchQueueEntry.objects.get(workspace=leaving).status == "cancelled"
    assert position(later) == 1
    again = launch(run_commits, members[2])  # the same name again, now behind `later`
    assert position(again) == 2


def test_only_a_queued_workspace_can_leave_the_queue(run_commits, pool, members):
    running = launch(run_commits, members[0])

    with pytest.raises(services.TransitionNotAllowed, match="Only a queued workspace"):
        slots.queue_leave(workspace=running, actor=None)


def test_a_member_who_can_no_longer_afford_it_is_skipped_with_a_reason_and_the_next_runs(
        run_commits, course, pool, members):
    pool.capacity = 1
    pool.save()
    holder = launch(run_commits, members[0])
    broke, patient = launch(run_commits, members[1]), launch(run_commits, members[2])
    Membership.objects.filter(pk=members[1].pk).update(budget_cap=Decimal("0.10"))

    stop(run_commits, holder)

    broke.refresh_from_db()
    assert broke.state == State.FAILED
    assert "Your turn for a slot came" in broke.failure_reason
    assert "Not enough budget" in broke.failure_reason
    entry = LaunchQueueEntry.objects.get(workspace=broke)
    assert entry.status == "skipped" and "Not enough budget" in entry.reason
    assert states(patient) == [State.RUNNING]


def test_a_stopped_workspace_restarting_while_the_pool_is_full_waits_then_starts_again(
        run_commits, pool, members):
    pool.capacity = 1
    pool.save()
    mine = launch(run_commits, members[0])
    instance = mine.instance_id
    stop(run_commits, mine)
    theirs = launch(run_commits, members[1])  # my stop gave the slot back

    run_commits(services.workspace_start, workspace=mine, actor=members[0].user)

    mine.refresh_from_db()
    assert mine.state == State.QUEUED and mine.instance_id == instance
    assert position(mine) == 1
    stop(run_commits, theirs)
    mine.refresh_from_db()
    assert mine.state == State.RUNNING and mine.instance_id == instance


def test_leaving_the_queue_with_a_stopped_workspace_keeps_it_and_its_disks(
        run_commits, pool, members):
    pool.capacity = 1
    pool.save()
    mine = launch(run_commits, members[0])
    stop(run_commits, mine)
    launch(run_commits, members[1])
    run_commits(services.workspace_start, workspace=mine, actor=members[0].user)

    run_commits(slots.queue_leave, workspace=mine, actor=members[0].user)

    mine.refresh_from_db()
    assert mine.state == State.STOPPED and mine.instance_id


def test_lowering_the_capacity_stops_nobody_and_admission_waits_for_enough_to_leave(
        run_commits, pool, members):
    first, second = launch(run_commits, members[0]), launch(run_commits, members[1])
    waiting = launch(run_commits, members[2])
    pool.capacity = 1
    pool.save()

    stop(run_commits, first)
    assert states(second, waiting) == [State.RUNNING, State.QUEUED]

    stop(run_commits, second)
    assert states(waiting) == [State.RUNNING]


def test_templates_without_a_capacity_never_queue(run_commits, approved, members):
    workspaces = [run_commits(services.workspace_launch, membership=m,
                              template_slug="ml-cpu-student", name="hw", actor=m.user)
                  for m in members[:4]]

    assert {w.state for w in workspaces} == {State.REQUESTED}
    assert not LaunchQueueEntry.objects.exists()


def test_the_sweep_admits_a_line_once_the_capacity_is_raised(run_commits, pool, members):
    for m in members[:2]:
        launch(run_commits, m)
    waiting = launch(run_commits, members[2])
    pool.capacity = 3
    pool.save()

    run_commits(tasks.slots_admit_sweep.delay)

    assert states(waiting) == [State.RUNNING]


# --- twenty clicks at once ----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_simultaneous_launches_never_take_more_slots_than_the_pool_has(prices, monkeypatch):
    course = CourseFactory(code="CS229")
    gpu = TemplateFactory(slug="gpu-lab", name="GPU lab", instance_type="g4dn.xlarge")
    ApprovedTemplateFactory(course=course, template=gpu, capacity=2)
    members = [MembershipFactory(course=course, user__username=f"c{n}") for n in range(10)]
    cloud_account_default()
    monkeypatch.setattr(tasks.workspace_launch_task, "delay", lambda *a: None)
    start = threading.Barrier(len(members))

    def click(member):
        try:
            start.wait()
            return services.workspace_launch(membership=member, template_slug="gpu-lab",
                                             name="race", actor=None).state
        finally:
            connection.close()

    with ThreadPoolExecutor(len(members)) as pool:
        results = list(pool.map(click, members))

    assert sorted(results).count(State.REQUESTED) == 2
    assert results.count(State.QUEUED) == 8
    line = LaunchQueueEntry.objects.filter(status="waiting").order_by("created_at", "pk")
    assert line.count() == 8
    assert slots.pool_holders_count(course_id=course.pk, template_id=gpu.pk) == 2


# --- the staff view -----------------------------------------------------------------


def _holding(owner, template, name):
    workspace = Workspace.objects.create(owner=owner, template=template, name=name,
                                         cloud_account=cloud_account_default(),
                                         instance_type=template.instance_type,
                                         state=State.RUNNING, instance_id=f"i-{name}",
                                         compute_usd_per_hour=Decimal("0.526"))
    WorkspaceEvent.objects.create(workspace=workspace, from_state="", to_state=State.REQUESTED,
                                  at=workspace.created_at)
    return workspace


def _waiting(owner, template, name):
    workspace = Workspace.objects.create(owner=owner, template=template, name=name,
                                         cloud_account=cloud_account_default(),
                                         instance_type=template.instance_type,
                                         state=State.QUEUED)
    return LaunchQueueEntry.objects.create(course=owner.course, template=template,
                                           membership=owner, workspace=workspace)


@pytest.fixture
def prof(course):
    return MembershipFactory(course=course, role=Membership.Role.INSTRUCTOR,
                             user__username="prof")


def test_staff_see_who_holds_the_slots_and_the_line_in_order(client, course, pool, prof):
    alice = MembershipFactory(course=course, name="Alice Holder")
    bob = MembershipFactory(course=course, name="Bob Waiter")
    carol = MembershipFactory(course=course, name="Carol Later")
    _holding(alice, pool.template, "resnet")
    _waiting(bob, pool.template, "bert")
    _waiting(carol, pool.template, "gan")
    client.force_login(prof.user)

    response = client.get(f"/courses/{course.pk}/slots/")

    text = response.content.decode()
    assert response.status_code == 200
    assert "1 of 2 GPU slots in use · 2 waiting" in text
    assert "Alice Holder" in text and "resnet" in text and "$0.5260" in text
    assert text.index("Bob Waiter") < text.index("Carol Later")


def test_the_slots_page_says_so_when_no_template_has_a_capacity(client, course, approved, prof):
    client.force_login(prof.user)

    text = client.get(f"/courses/{course.pk}/slots/").content.decode()

    assert "No template in this course has a slot limit" in text


@pytest.mark.parametrize("role", [Membership.Role.INSTRUCTOR, Membership.Role.HEAD_TA,
                                  Membership.Role.TA])
def test_every_staff_role_may_view_the_slots(course, role):
    assert membership_may(actor=MembershipFactory(course=course, role=role),
                          action=Action.VIEW_SLOTS)


def test_students_get_403_and_outsiders_and_other_courses_staff_get_404(client, course, pool,
                                                                         student):
    url = f"/courses/{course.pk}/slots/"
    client.force_login(student.user)
    assert client.get(url).status_code == 403

    outsider = MembershipFactory(role=Membership.Role.INSTRUCTOR)  # staff of another course
    client.force_login(outsider.user)
    assert client.get(url).status_code == 404

    client.logout()
    assert client.get(url).status_code == 302  # to sign-in


def test_the_slots_page_query_count_does_not_grow_with_holders_or_line(
        client, course, pool, prof, django_assert_max_num_queries):
    def fill(n, start):
        for i in range(n):
            m = MembershipFactory(course=course)
            _holding(m, pool.template, f"h{start + i}")
            _waiting(MembershipFactory(course=course), pool.template, f"w{start + i}")

    fill(1, 0)
    client.force_login(prof.user)
    with CaptureQueriesContext(connection) as small:
        client.get(f"/courses/{course.pk}/slots/")
    fill(6, 10)
    with django_assert_max_num_queries(len(small.captured_queries)):
        response = client.get(f"/courses/{course.pk}/slots/")
    assert response.content.decode().count("<tr>") >= 14
    assert len(small.captured_queries) <= 10


def test_another_student_cannot_take_a_workspace_out_of_line(client, run_commits, pool, members):
    for m in members[:2]:
        launch(run_commits, m)
    queued = launch(run_commits, members[2])
    client.force_login(members[3].user)

    response = client.post(f"/workspaces/{queued.pk}/leave-queue/", HTTP_HX_REQUEST="true")

    assert response.status_code == 404
    assert states(queued) == [State.QUEUED]


def test_the_owner_leaves_the_queue_through_the_api(client, run_commits, pool, members):
    for m in members[:2]:
        launch(run_commits, m)
    queued = launch(run_commits, members[2])
    client.force_login(members[2].user)

    response = client.post(f"/api/workspaces/{queued.pk}/leave-queue/")

    assert response.status_code == 202
    assert states(queued) == [State.ARCHIVED]


# --- live position ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_people_behind_hear_their_new_place_live_when_someone_ahead_leaves(client, prices):
    from asgiref.sync import async_to_sync
    from channels.db import database_sync_to_async

    from tests.provisioning.test_consumers import communicator, session_cookie

    course = CourseFactory(code="CS229")
    gpu = TemplateFactory(slug="gpu-lab", name="GPU lab", instance_type="g4dn.xlarge")
    ApprovedTemplateFactory(course=course, template=gpu, capacity=1)
    _holding(MembershipFactory(course=course), gpu, "resnet")
    ahead = _waiting(MembershipFactory(course=course), gpu, "bert").workspace
    carol = MembershipFactory(course=course, user__username="carol")
    behind = _waiting(carol, gpu, "gan").workspace
    cookie = session_cookie(client, carol)

    async def listen():
        comm = communicator(f"/ws/members/{carol.pk}/", cookie)
        connected, _ = await comm.connect()
        assert connected
        await database_sync_to_async(slots.queue_leave)(workspace=ahead, actor=None)
        message = await comm.receive_from(timeout=5)
        await comm.disconnect()
        return message

    message = async_to_sync(listen)()

    assert f'id="queue-{behind.pk}"' in message and 'hx-swap-oob="true"' in message
    assert "you are 1st in line (1 slot, all in use)" in message


# --- the demo -----------------------------------------------------------------------


def test_the_demo_seeds_a_one_slot_gpu_lab_that_david_holds_so_emily_queues(
        db, run_commits, django_capture_on_commit_callbacks):
    from django.core.management import call_command

    with django_capture_on_commit_callbacks(execute=True):
        call_command("demo_seed")
        call_command("demo_seed")

    held = Workspace.objects.get(template__slug="gpu-lab")
    assert held.owner.email == "david.kim@demo.lens.edu" and held.state == State.RUNNING
    emily = Membership.objects.get(email="emily.chen@demo.lens.edu")
    hers = run_commits(services.workspace_launch, membership=emily, template_slug="gpu-lab",
                       name="lab3", actor=emily.user)
    assert hers.state == State.QUEUED

    stop(run_commits, held)

    assert states(hers) == [State.RUNNING]


def test_a_demo_restarted_on_a_fresh_fake_aws_gives_david_a_new_gpu_slot_holder(
        db, fake_aws, django_capture_on_commit_callbacks):
    """The embedded moto keeps nothing across restarts; the next seed must not count a
    machine AWS no longer has as the slot's holder."""
    import urllib.request
    from datetime import timedelta

    import time_machine
    from django.core.management import call_command
    from django.utils import timezone

    with django_capture_on_commit_callbacks(execute=True):
        call_command("demo_seed")
    first = Workspace.objects.get(template__slug="gpu-lab")
    urllib.request.urlopen(urllib.request.Request(f"{fake_aws}/moto-api/reset", method="POST"))

    with time_machine.travel(timezone.now() + timedelta(minutes=10)), \
            django_capture_on_commit_callbacks(execute=True):
        call_command("demo_seed")

    first.refresh_from_db()
    assert first.state == State.TERMINATED
    holder = Workspace.objects.exclude(pk=first.pk).get(template__slug="gpu-lab")
    assert holder.owner.email == "david.kim@demo.lens.edu" and holder.state == State.RUNNING
