"""Demo data for `make demo`: CS 229 with staff, students, templates and prices.

Idempotent: every row is found by its natural key and updated, so a second
run neither duplicates nor fails. The only workspace it makes is the GPU lab's
slot holder (launched once, through the normal launch service, so the worker
brings it up when the demo starts).
"""

from datetime import datetime
from decimal import ROUND_UP, Decimal
from zoneinfo import ZoneInfo

from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from billing import ledger
from billing.services import prices_load_bundled
from courses.models import Approval, Course, HelpRequest, Membership, Message, Section
from provisioning.models import ApprovedTemplate, Workspace, WorkspaceTemplate
from provisioning.reconcile import reconcile_all
from provisioning.services import cloud_account_default, storage_usd_per_hour, workspace_launch
from provisioning.states import ACTIVE_STATES, State

PASSWORD = "lens-demo"
DOMAIN = "demo.lens.edu"
AL2023 = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"

SET_BELOW = object()
PEOPLE = [
    # local part, name, role, section, own cap (None: the course default, $24)
    ("jennifer.martinez", "Dr. Jennifer Martinez", Membership.Role.INSTRUCTOR, "", None),
    ("alex.thompson", "Alex Thompson", Membership.Role.HEAD_TA, "", None),
    ("priya.sharma", "Priya Sharma", Membership.Role.TA, "A", None),
    ("emily.chen", "Emily Chen", Membership.Role.STUDENT, "A", None),
    ("david.kim", "David Kim", Membership.Role.STUDENT, "A", None),
    # Her cap is set below: what she has used, her disks until term end, and
    # about ten minutes of a t3.medium, so Lens stops her machine at the cap soon
    # after she launches it.
    ("sophie.martinez", "Sophie Martinez", Membership.Role.STUDENT, "B", SET_BELOW),
]

TEMPLATES = [
    # slug, name, instance type, description, approved, requires approval, note
    ("ml-cpu-student", "ML CPU workspace", "t3.medium",
     "Python 3, Jupyter Lab, scikit-learn and PyTorch (CPU) for weekly assignments.",
     True, False, ""),
    ("ml-final-project", "ML final project", "t3.large",
     "More memory for training the final project.", True, False, "final project"),
    ("gpu-ml-workstation", "GPU ML workstation", "g4dn.xlarge",
     "NVIDIA T4, CUDA and PyTorch for deep learning research.", True, True,
     "final project only; request access first"),
    ("quick-lab", "Quick lab", "t3.small",
     "A small machine for in-class exercises. It stops after 3 minutes without activity, "
     "so the demo shows idle auto-stop: launch it and watch the warning, then the stop.",
     True, False, ""),
]
# Idle auto-stop per template, in minutes: an hour for GPUs, the class's four hours
# otherwise, and three for the quick lab so the demo shows a machine stopping when idle.
# (The fake AWS reports no CloudWatch datapoints, which Lens reads as no activity.)
IDLE_MINUTES = {"g4dn.xlarge": 60, "quick-lab": 3}

# The GPU slots demo: a course pool with one slot (see _gpu_lab).
GPU_LAB = ("gpu-lab", "GPU lab (shared T4)", "g4dn.xlarge",
           "NVIDIA T4 for the deep-learning labs; one shared slot, first come first served.")


class Command(BaseCommand):
    help = "Create or refresh the demo course, people, templates and prices."

    @transaction.atomic
    def handle(self, *args, **options):
        prices_load_bundled()
        cloud_account_default()
        zone = ZoneInfo("America/Los_Angeles")
        course, _ = Course.objects.update_or_create(
            code="CS229-F26",
            defaults={
                "title": "CS 229 — Machine Learning",
                "term_label": "Fall 2026",
                "kind": Course.Kind.CLASS,
                "status": Course.Status.ACTIVE,
                "time_zone": "America/Los_Angeles",
                "starts_at": datetime(2026, 8, 24, tzinfo=zone),
                "ends_at": datetime(2026, 12, 11, 23, 59, 59, tzinfo=zone),
                "region": "us-east-1",
                "budget_total": Decimal("1200.00"),
                "default_member_budget": Decimal("24.00"),
                "expected_students": 50,
                "max_concurrent_workspaces": 2,
                "idle_stop_minutes": 240,
            },
        )
        User = get_user_model()
        admin, _ = User.objects.get_or_create(username="admin", defaults={
            "email": f"admin@{DOMAIN}", "is_staff": True, "is_superuser": True})
        self._password(admin)
        for section in sorted({p[3] for p in PEOPLE if p[3]}):
            Section.objects.get_or_create(course=course, name=section)
        for local, name, role, section, cap in PEOPLE:
            email = f"{local}@{DOMAIN}"
            first, _, last = name.replace("Dr. ", "").partition(" ")
            user, _ = User.objects.get_or_create(username=local, defaults={
                "email": email, "first_name": first, "last_name": last})
            self._password(user)
            defaults = {"user": user, "name": name, "role": role, "section": section,
                        "status": Membership.Status.ACTIVE}
            if cap is not SET_BELOW:
                defaults["budget_cap"] = cap
            Membership.objects.update_or_create(course=course, email=email, defaults=defaults)
        # The instructor may set up further courses (the course wizard).
        may_create = Permission.objects.get(content_type__app_label="courses",
                                            codename="add_course")
        User.objects.get(username="jennifer.martinez").user_permissions.add(may_create)
        sophie = Membership.objects.get(course=course, email=f"sophie.martinez@{DOMAIN}")
        ledger.adjustment_grant(membership=sophie, amount=Decimal("0.006"), actor=None,
                                note="earlier use (demo data)", key="demo-sophie-earlier-use")
        for slug, name, itype, description, approved, needs, note in TEMPLATES:
            template, _ = WorkspaceTemplate.objects.update_or_create(slug=slug, defaults={
                "name": name, "instance_type": itype, "description": description,
                "image": AL2023,
                "idle_stop_minutes": IDLE_MINUTES.get(slug, IDLE_MINUTES.get(itype, 240))})
            if approved:
                ApprovedTemplate.objects.update_or_create(
                    course=course, template=template,
                    defaults={"requires_approval": needs, "note": note})
            else:
                ApprovedTemplate.objects.filter(course=course, template=template).delete()
        self._sophie_cap(course, sophie)
        self._help_and_messages(course)
        self._pending_request(course)
        # The embedded fake AWS keeps nothing across restarts: fold what it lost first, so
        # a machine that is gone no longer counts as the GPU slot's holder.
        reconcile_all()
        self._gpu_lab(course)
        self.stdout.write(f"Demo data ready: {course} with {len(PEOPLE)} people.")

    def _sophie_cap(self, course, sophie):
        """Enough for her disks to term end and about ten minutes of machine time.

        Recomputed at every start of the demo, since what the disks will cost
        shrinks as the term goes by. Caps are whole cents: 6 to 20 minutes.
        """
        if Workspace.objects.filter(owner=sophie).exists():
            return  # she has launched: leave her budget as the demo left it
        template = WorkspaceTemplate.objects.get(slug="ml-cpu-student")
        disks = storage_usd_per_hour(region=course.region,
                                     gib=template.root_volume_gib + template.home_volume_gib)
        needed = (ledger.member_spend(membership_id=sophie.pk) + Decimal("0.004")
                  + ledger.storage_reserved(course=course, usd_per_hour=disks,
                                            now=timezone.now()))
        Membership.objects.filter(pk=sophie.pk).update(
            budget_cap=needed.quantize(Decimal("0.01"), rounding=ROUND_UP))

    def _help_and_messages(self, course):
        """A message from the professor to Emily (unread) and David's open help
        request. Created once: found by their text, never reset once the demo
        has read, claimed or resolved them."""
        def member(local):
            return Membership.objects.get(course=course, email=f"{local}@{DOMAIN}")

        jennifer, emily, david = member("jennifer.martinez"), member("emily.chen"), \
            member("david.kim")
        Message.objects.get_or_create(
            course=course, recipient=emily, subject="Office hours moved to Thursday",
            defaults={"sender": jennifer.user, "sender_name": jennifer.display_name,
                      "body": "Hi Emily,\n\nThis week's office hours are on Thursday 3-5 pm "
                              "in Gates 104. Bring your homework 2 notebook if the gradient "
                              "check still fails.\n\nJennifer",
                      # Demo data is not emailed: the console backend would print it at start.
                      "emailed_at": timezone.now()})
        if not HelpRequest.objects.filter(membership=david).exists():
            HelpRequest.objects.create(
                course=course, membership=david, summary="My training crashes",
                details="The kernel dies at epoch 3 with \"Killed\"; I think it runs out "
                        "of memory on the full data set.")

    def _pending_request(self, course):
        """David has asked for the GPU template, so the course page shows a pending
        request. Made once: after the demo decides it, a new run leaves it decided."""
        david = Membership.objects.get(course=course, email=f"david.kim@{DOMAIN}")
        if not Approval.objects.filter(membership=david, template_slug="gpu-ml-workstation"
                                       ).exists():
            Approval.objects.create(
                course=course, membership=david, kind=Approval.Kind.TEMPLATE,
                template_slug="gpu-ml-workstation",
                reason="Final project: fine-tuning a ResNet-50 on 40k images; the CPU "
                       "template takes about 9 hours an epoch.")

    def _gpu_lab(self, course):
        """A one-slot GPU pool whose slot David holds, so Emily's launch waits in line
        and is admitted by itself the moment David stops his machine."""
        template, _ = WorkspaceTemplate.objects.update_or_create(slug=GPU_LAB[0], defaults={
            "name": GPU_LAB[1], "instance_type": GPU_LAB[2], "description": GPU_LAB[3],
            "image": AL2023, "idle_stop_minutes": 60})
        ApprovedTemplate.objects.update_or_create(course=course, template=template, defaults={
            "requires_approval": False, "capacity": 1,
            "note": "one shared GPU: launches wait in line for it"})
        david = Membership.objects.get(course=course, email=f"david.kim@{DOMAIN}")
        held = Workspace.objects.filter(owner=david, template=template).filter(
            state__in=ACTIVE_STATES | {State.STOPPED, State.QUEUED})
        if not held.exists():  # launched once; after that the demo's own history stands
            workspace_launch(membership=david, template_slug=template.slug, name="cnn-training",
                             actor=david.user)

    def _password(self, user):
        if not user.check_password(PASSWORD):
            user.set_password(PASSWORD)
            user.save()
        EmailAddress.objects.update_or_create(
            user=user, email=user.email, defaults={"verified": True, "primary": True})
