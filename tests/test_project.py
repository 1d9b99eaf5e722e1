"""Project plumbing a user or operator relies on: settings, demo data, API docs."""

from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from billing.models import InstancePrice
from courses.models import Approval, Course, Membership
from lens.env import env_bool, env_int
from provisioning.models import ApprovedTemplate, WorkspaceTemplate


def test_a_malformed_boolean_or_number_in_the_environment_stops_start_up(monkeypatch):
    monkeypatch.setenv("DEBUG", "ture")
    monkeypatch.setenv("LENS_POLL_SECONDS", "five")

    with pytest.raises(ImproperlyConfigured, match="DEBUG='ture' is not a boolean"):
        env_bool("DEBUG", False)
    with pytest.raises(ImproperlyConfigured, match="LENS_POLL_SECONDS='five'"):
        env_int("LENS_POLL_SECONDS", 5)


def test_demo_data_can_be_loaded_twice_without_duplicates(db):
    call_command("demo_seed")
    counts = [Course.objects.count(), Membership.objects.count(),
              WorkspaceTemplate.objects.count(), ApprovedTemplate.objects.count(),
              InstancePrice.objects.count()]

    call_command("demo_seed")

    assert [Course.objects.count(), Membership.objects.count(),
            WorkspaceTemplate.objects.count(), ApprovedTemplate.objects.count(),
            InstancePrice.objects.count()] == counts == [1, 6, 5, 5, 102]
    roles = sorted(Membership.objects.values_list("role", flat=True))
    assert roles == ["head_ta", "instructor", "student", "student", "student", "ta"]
    approved = set(ApprovedTemplate.objects.values_list("template__slug", flat=True))
    assert approved == {"ml-cpu-student", "ml-final-project", "gpu-ml-workstation", "quick-lab",
                        "gpu-lab"}
    pending = Approval.objects.get(status=Approval.Status.PENDING)  # one, not two
    assert pending.template_slug == "gpu-ml-workstation" and pending.course.code == "CS229-F26"
    # The quick lab shows idle auto-stop within minutes; the GPU stops after an hour.
    assert dict(WorkspaceTemplate.objects.values_list("slug", "idle_stop_minutes")) == {
        "ml-cpu-student": 240, "ml-final-project": 240, "gpu-ml-workstation": 60,
        "quick-lab": 3, "gpu-lab": 60}
    price = InstancePrice.objects.get(instance_type="p3.2xlarge", region="us-east-1")
    assert str(price.usd_per_hour) == "3.060000" and "aws.amazon.com" in price.source


def test_the_openapi_schema_describes_launch_stop_and_start(client, db):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()

    assert {"/api/workspaces/", "/api/workspaces/{id}/", "/api/workspaces/{id}/stop/",
            "/api/workspaces/{id}/start/",
            "/api/courses/{course_id}/templates/"} <= set(schema["paths"])
    assert client.get("/api/docs/").status_code == 200


def test_every_model_s_admin_list_opens_for_a_superuser(client, db):
    from django.contrib import admin
    from django.contrib.auth import get_user_model

    call_command("demo_seed")
    client.force_login(get_user_model().objects.get(username="admin"))
    for model in admin.site._registry:
        opts = model._meta
        response = client.get(f"/admin/{opts.app_label}/{opts.model_name}/")
        assert response.status_code == 200, opts.label


@pytest.mark.django_db(transaction=True)
def test_the_demo_s_low_budget_student_gets_minutes_of_machine_time_after_her_disks(settings):
    from datetime import UTC, datetime, timedelta

    import time_machine

    from provisioning.models import BudgetWatch
    from provisioning.services import workspace_launch

    settings.LENS_HOLD_HOURS = Decimal("0.05")  # as `make demo` sets it
    with time_machine.travel(datetime(2026, 11, 23, 18, 0, tzinfo=UTC), tick=False):
        call_command("demo_seed")
        sophie = Membership.objects.get(email="sophie.martinez@demo.lens.edu")
        workspace_launch(membership=sophie, template_slug="ml-cpu-student", name="hw",
                         actor=sophie.user)
        check_at = BudgetWatch.objects.get(membership=sophie).check_at
        left = check_at - datetime(2026, 11, 23, 18, 0, tzinfo=UTC)

    assert timedelta(minutes=5) < left < timedelta(minutes=21)
