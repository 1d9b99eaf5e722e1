"""Per-person SSH keys: checked on the way in, generated once, only on the owner's machines."""

import logging
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from django.urls import reverse

from courses.models import Membership
from provisioning import keys, services, tasks
from provisioning.models import KeyPair, Workspace
from provisioning.states import State
from tests.conftest import ec2, instances_tagged
from tests.factories import PASSWORD, MembershipFactory


def openssh_public(private, comment: str = "me@laptop") -> str:
    line = private.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                             serialization.PublicFormat.OpenSSH).decode()
    return f"{line} {comment}"


def ed25519_line(comment: str = "me@laptop") -> str:
    return openssh_public(ed25519.Ed25519PrivateKey.generate(), comment)


def login(client, membership):
    assert client.login(username=membership.user.username, password=PASSWORD)


def launched(membership, name: str, django_capture_on_commit_callbacks) -> Workspace:
    with django_capture_on_commit_callbacks(execute=False):
        workspace = services.workspace_launch(membership=membership,
                                              template_slug="ml-cpu-student", name=name,
                                              actor=membership.user)
    tasks.workspace_launch_task.delay(workspace.pk)
    workspace.refresh_from_db()
    return workspace


# --- what Lens accepts ------------------------------------------------------


def test_the_fingerprint_is_the_one_ssh_keygen_prints(tmp_path):
    line = ed25519_line()
    (tmp_path / "k.pub").write_text(line + "\n")
    printed = subprocess.run(["ssh-keygen", "-lf", str(tmp_path / "k.pub")], check=True,
                             capture_output=True, text=True).stdout.split()[1]

    assert keys.public_key_parse(text=line).fingerprint == printed


def test_rsa_keys_of_2048_bits_are_accepted_with_their_comment():
    line = openssh_public(rsa.generate_private_key(public_exponent=65537, key_size=2048),
                          "old laptop")

    parsed = keys.public_key_parse(text=f"  {line}\n")

    assert (parsed.key_type, parsed.comment) == ("ssh-rsa", "old laptop")


@pytest.mark.parametrize(("text", "says"), [
    ("", "Paste your public key"),
    ("hello world", "does not look like an OpenSSH public key"),
    ("ssh-ed25519 !!!notbase64!!!", "not valid base64"),
    ("ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQ", "copy the whole line again"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----",
     "That is a private key"),
    (ed25519_line() + "\n" + ed25519_line(), "one key, on one line"),
])
def test_garbage_is_refused_with_a_reason(text, says):
    with pytest.raises(keys.KeyRefused) as refusal:
        keys.public_key_parse(text=text)

    assert says in refusal.value.message


def test_short_rsa_keys_are_refused_and_the_size_is_named():
    line = openssh_public(rsa.generate_private_key(public_exponent=65537, key_size=1024))

    with pytest.raises(keys.KeyRefused, match="1024 bits; Lens needs at least 2048"):
        keys.public_key_parse(text=line)


def test_ecdsa_and_dsa_keys_are_refused_because_ec2_cannot_import_them():
    ecdsa = openssh_public(ec.generate_private_key(ec.SECP256R1()))
    dss = "ssh-dss AAAAB3NzaC1kc3MAAACBAP me@old-box"

    with pytest.raises(keys.KeyRefused, match="only ed25519 and RSA"):
        keys.public_key_parse(text=ecdsa)
    with pytest.raises(keys.KeyRefused, match="DSA keys"):
        keys.public_key_parse(text=dss)


def test_a_public_key_someone_else_registered_is_refused(student, other_student):
    line = ed25519_line()
    keys.key_upload(user=student.user, public_key=line)

    with pytest.raises(keys.KeyRefused, match="already registered to another Lens account"):
        keys.key_upload(user=other_student.user, public_key=line)
    assert not KeyPair.objects.filter(user=other_student.user).exists()


# --- the page -----------------------------------------------------------------


def test_the_page_says_there_is_no_key_yet_and_that_jupyter_still_works(client, student):
    login(client, student)

    page = client.get(reverse("ssh-keys")).content.decode()

    assert 'data-testid="no-key"' in page and "Jupyter" in page


def test_an_uploaded_key_replaces_nothing_but_shows_its_fingerprint(client, student):
    login(client, student)
    line = ed25519_line()

    response = client.post(reverse("ssh-key-upload"), {"public_key": line}, follow=True)

    key = KeyPair.objects.get(user=student.user)
    assert key.source == KeyPair.Source.UPLOADED and key.public_key == line
    assert key.fingerprint in response.content.decode()


def test_a_bad_upload_is_answered_with_the_error_next_to_the_field(client, student):
    login(client, student)

    response = client.post(reverse("ssh-key-upload"), {"public_key": "ssh-rsa AAAA"})

    assert response.status_code == 400
    page = response.content.decode()
    assert 'data-field="public_key"' in page and "copy the whole line again" in page
    assert not KeyPair.objects.exists()


def test_generate_downloads_the_private_key_once_and_keeps_only_the_public_half(
        client, student, caplog):
    login(client, student)
    caplog.set_level(logging.DEBUG)

    response = client.post(reverse("ssh-key-generate"))

    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="lens_ed25519"'
    assert "no-store" in response["Cache-Control"]
    private_text = response.content.decode()
    assert private_text.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    private = serialization.load_ssh_private_key(response.content, password=None)
    key = KeyPair.objects.get(user=student.user)
    assert key.source == KeyPair.Source.GENERATED and key.key_type == "ssh-ed25519"
    assert key.public_key.startswith(openssh_public(private, "").strip())
    # Nowhere else: not in any column of the row, not in the logs.
    body = private_text.splitlines()[1]
    row = KeyPair.objects.filter(pk=key.pk).values().get()
    assert not any(body in str(value) for value in row.values())
    assert body not in caplog.text
    # And the page shows the new fingerprint, never the private key again.
    page = client.get(reverse("ssh-keys")).content.decode()
    assert key.fingerprint in page and body not in page


def test_replacing_a_key_warns_that_launched_workspaces_keep_the_old_one(
        client, student, approved, django_capture_on_commit_callbacks):
    keys.key_upload(user=student.user, public_key=ed25519_line())
    launched(student, "hw1", django_capture_on_commit_callbacks)
    login(client, student)

    response = client.post(reverse("ssh-key-generate"))
    page = client.get(reverse("ssh-keys")).content.decode()

    assert response.status_code == 200
    assert "keep accepting your previous key until they are reset" in page
    assert 'data-testid="other-key"' in page


def test_the_key_pages_need_a_signed_in_user_and_only_take_posts(client, student):
    assert client.get(reverse("ssh-keys")).status_code == 302
    assert client.post(reverse("ssh-key-generate")).status_code == 302
    login(client, student)
    assert client.get(reverse("ssh-key-generate")).status_code == 405
    assert not KeyPair.objects.exists()


# --- the API ------------------------------------------------------------------


def test_the_api_uploads_reads_generates_and_removes_your_key(client, student):
    login(client, student)
    assert client.get("/api/keys/").status_code == 404

    bad = client.post("/api/keys/", {"public_key": "ssh-dss AAAA"}, content_type="application/json")
    good = client.post("/api/keys/", {"public_key": ed25519_line()},
                       content_type="application/json")
    generated = client.post("/api/keys/generate/")

    assert bad.status_code == 400 and "DSA keys" in bad.json()["public_key"][0]
    assert good.status_code == 200 and good.json()["fingerprint"].startswith("SHA256:")
    assert generated.status_code == 201 and generated["Cache-Control"] == "no-store"
    assert generated.json()["private_key"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert client.get("/api/keys/").json()["fingerprint"] == generated.json()["fingerprint"]
    assert "private_key" not in client.get("/api/keys/").json()
    assert client.delete("/api/keys/").status_code == 204
    assert client.get("/api/keys/").status_code == 404


def test_the_api_says_which_field_is_wrong_when_the_key_belongs_to_someone_else(
        client, student, other_student):
    line = ed25519_line()
    keys.key_upload(user=student.user, public_key=line)
    login(client, other_student)

    response = client.post("/api/keys/", {"public_key": line}, content_type="application/json")

    assert response.status_code == 400
    assert "another Lens account" in response.json()["public_key"][0]


def test_the_api_refuses_anonymous_callers(client):
    assert client.get("/api/keys/").status_code in {401, 403}
    assert client.post("/api/keys/generate/").status_code in {401, 403}


# --- nobody else's key ------------------------------------------------------------


def test_b_never_sees_or_removes_a_s_key(client, student, other_student):
    a_key = keys.key_upload(user=student.user, public_key=ed25519_line())
    login(client, other_student)

    page = client.get(reverse("ssh-keys")).content.decode()
    api = client.get("/api/keys/")
    client.post(reverse("ssh-key-delete"))
    client.delete("/api/keys/")

    assert a_key.fingerprint not in page and api.status_code == 404
    assert KeyPair.objects.filter(pk=a_key.pk).exists()


def test_course_staff_see_a_student_s_workspace_but_not_the_student_s_key(
        client, course, student, approved, django_capture_on_commit_callbacks):
    a_key = keys.key_upload(user=student.user, public_key=ed25519_line())
    workspace = launched(student, "hw1", django_capture_on_commit_callbacks)
    instructor = MembershipFactory(course=course, role=Membership.Role.INSTRUCTOR,
                                   user__username="prof")
    login(client, instructor)

    page = client.get(reverse("workspace-detail", args=[workspace.pk]))
    api = client.get(f"/api/workspaces/{workspace.pk}/")

    assert page.status_code == 200 and api.status_code == 200
    body = page.content.decode() + api.content.decode()
    assert a_key.fingerprint not in body and a_key.public_key.split()[1] not in body
    assert client.get("/api/keys/").status_code == 404


def test_b_s_instance_never_gets_a_s_key_even_in_the_same_course(
        student, other_student, approved, fake_aws, django_capture_on_commit_callbacks):
    a_key = keys.key_upload(user=student.user, public_key=ed25519_line())
    b_key = keys.key_upload(user=other_student.user, public_key=ed25519_line())

    a_ws = launched(student, "hw1", django_capture_on_commit_callbacks)
    b_ws = launched(other_student, "hw1", django_capture_on_commit_callbacks)

    [a_instance] = instances_tagged(fake_aws, a_ws.pk)
    [b_instance] = instances_tagged(fake_aws, b_ws.pk)
    assert a_instance["KeyName"] == a_key.aws_key_name == a_ws.key_name
    assert b_instance["KeyName"] == b_key.aws_key_name == b_ws.key_name
    assert a_key.aws_key_name != b_key.aws_key_name
    imported = {k["KeyName"]: k for k in ec2(fake_aws).describe_key_pairs()["KeyPairs"]}
    assert set(imported) == {a_key.aws_key_name, b_key.aws_key_name}


def test_a_member_without_a_key_still_launches_with_no_key_on_the_machine(
        student, approved, fake_aws, django_capture_on_commit_callbacks):
    workspace = launched(student, "hw1", django_capture_on_commit_callbacks)

    [instance] = instances_tagged(fake_aws, workspace.pk)
    assert workspace.state == State.RUNNING
    assert "KeyName" not in instance and workspace.key_name == ""


def test_a_person_in_two_courses_uses_one_key_imported_once(
        student, approved, fake_aws, django_capture_on_commit_callbacks):
    from tests.factories import ApprovedTemplateFactory, CourseFactory

    other_course = CourseFactory()
    ApprovedTemplateFactory(course=other_course, template=approved.template)
    second = MembershipFactory(course=other_course, user=student.user)
    key = keys.key_upload(user=student.user, public_key=ed25519_line())

    first_ws = launched(student, "hw1", django_capture_on_commit_callbacks)
    second_ws = launched(second, "project", django_capture_on_commit_callbacks)

    assert first_ws.key_name == second_ws.key_name == key.aws_key_name
    assert len(ec2(fake_aws).describe_key_pairs()["KeyPairs"]) == 1
