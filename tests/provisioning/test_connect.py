"""The connect panel: the exact ssh command and Jupyter URL, or why not yet."""

import html

from django.urls import reverse

from courses.models import Membership
from provisioning import keys, services, tasks
from provisioning.models import Workspace
from provisioning.states import State
from tests.factories import PASSWORD, MembershipFactory
from tests.provisioning.test_keys import ed25519_line


def login(client, membership):
    assert client.login(username=membership.user.username, password=PASSWORD)


def running(membership) -> Workspace:
    """Launch through the service, and run its task at once (the on-commit hook never fires
    inside the test's transaction)."""
    workspace = services.workspace_launch(membership=membership, template_slug="ml-cpu-student",
                                          name="hw1", actor=membership.user)
    tasks.workspace_launch_task.delay(workspace.pk)
    workspace.refresh_from_db()
    assert workspace.state == State.RUNNING
    return workspace


def page_of(client, workspace) -> str:
    return html.unescape(client.get(reverse("workspace-detail", args=[workspace.pk]))
                         .content.decode())


def test_a_running_workspace_shows_the_exact_ssh_command_and_jupyter_url(
        client, student, approved):
    keys.key_generate(user=student.user)
    workspace = running(student)
    host = workspace.public_dns or workspace.public_ip
    assert host
    login(client, student)

    page = page_of(client, workspace)

    assert f"ssh -i ~/.ssh/lens_ed25519 ubuntu@{host}" in page
    assert f'href="http://{host}:8888/"' in page
    panel = page.split('data-testid="connect"')[1].split("</section>")[0]
    assert f'data-copy="ssh-{workspace.pk}"' in panel and "disabled>" not in panel
    api = client.get(f"/api/workspaces/{workspace.pk}/").json()["connect"]
    assert api["ready"] and api["ssh_command"] == f"ssh -i ~/.ssh/lens_ed25519 ubuntu@{host}"
    assert api["jupyter_url"] == f"http://{host}:8888/"


def test_the_login_user_and_key_file_follow_the_template_and_the_uploaded_key(
        client, student, approved):
    approved.template.login_user = "ec2-user"
    approved.template.save()
    keys.key_upload(user=student.user, public_key=ed25519_line())
    workspace = running(student)
    login(client, student)

    assert "ssh -i ~/.ssh/id_ed25519 ec2-user@" in page_of(client, workspace)


def test_a_template_without_jupyter_shows_no_jupyter_url(client, student, approved):
    approved.template.ports = "22"
    approved.template.save()
    workspace = running(student)
    login(client, student)

    assert 'data-testid="jupyter-url"' not in page_of(client, workspace)


def test_a_stopped_workspace_greys_the_panel_out_and_says_why(
        client, student, approved):
    keys.key_generate(user=student.user)
    workspace = running(student)
    services.workspace_stop(workspace=workspace, actor=student.user)
    tasks.workspace_stop_task.delay(workspace.pk)
    workspace.refresh_from_db()
    assert workspace.state == State.STOPPED
    login(client, student)

    page = page_of(client, workspace)
    panel = page.split('data-testid="connect"')[1].split("</section>")[0]

    assert 'class="connect off"' in page
    assert "ubuntu@<address>" in panel and "http://<address>:8888/" in panel
    assert panel.count("disabled>") == 2
    assert "The workspace is stopped. Start it to connect" in panel


def test_a_member_without_a_key_is_told_to_add_one_and_that_jupyter_works(
        client, student, approved):
    workspace = running(student)
    login(client, student)

    page = page_of(client, workspace)

    assert "Add an SSH key to connect with ssh; Jupyter works without one." in page
    assert reverse("ssh-keys") in page


def test_a_workspace_launched_before_a_key_change_says_it_keeps_the_earlier_key(
        client, student, approved):
    keys.key_upload(user=student.user, public_key=ed25519_line())
    workspace = running(student)
    keys.key_generate(user=student.user)
    login(client, student)

    page = page_of(client, workspace)

    assert "accepts your earlier key" in page and "~/.ssh/<your earlier key>" in page


def test_the_running_card_on_the_dashboard_has_the_compact_panel(
        client, student, approved):
    keys.key_generate(user=student.user)
    workspace = running(student)
    host = workspace.public_dns or workspace.public_ip
    login(client, student)

    page = html.unescape(client.get(reverse("home")).content.decode())

    assert f"ssh -i ~/.ssh/lens_ed25519 ubuntu@{host}" in page
    assert f"http://{host}:8888/" in page and "connect compact" in page


def test_the_dashboard_reads_every_owner_key_in_the_same_query_as_the_cards(
        client, student, approved, django_assert_max_num_queries):
    from provisioning.cards import member_workspace_cards

    keys.key_generate(user=student.user)
    running(student)

    with django_assert_max_num_queries(2):  # the cards, then their prices
        cards = member_workspace_cards(membership_ids=[student.pk])[student.pk]
        commands = [card.connect.ssh_command for card in cards]

    assert commands and commands[0].startswith("ssh -i ~/.ssh/lens_ed25519 ")


def test_staff_see_the_command_with_a_note_that_it_needs_the_owner_s_key(
        client, course, student, approved):
    keys.key_generate(user=student.user)
    workspace = running(student)
    ta = MembershipFactory(course=course, role=Membership.Role.HEAD_TA, user__username="tara")
    login(client, ta)

    page = page_of(client, workspace)

    assert f"works with {student.display_name}'s private key only" in page
    assert "Your key:" not in page
