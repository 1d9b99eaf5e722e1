from decimal import Decimal

import factory
from django.contrib.auth import get_user_model

from courses.models import Course, Membership
from provisioning.models import ApprovedTemplate, WorkspaceTemplate

AL2023 = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
PASSWORD = "correct-horse-battery"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@uni.example.edu")
    password = factory.django.Password(PASSWORD)


class CourseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Course

    # Not shaped like the codes tests choose (CS229, CS101), so a long run never collides.
    code = factory.Sequence(lambda n: f"GEN-{n:04d}")
    title = factory.LazyAttribute(lambda c: f"Course {c.code}")
    status = Course.Status.ACTIVE
    time_zone = "America/New_York"
    max_concurrent_workspaces = 0  # no limit unless a test sets one
    default_member_budget = Decimal("50.00")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    course = factory.SubFactory(CourseFactory)
    user = factory.SubFactory(UserFactory)
    email = factory.LazyAttribute(lambda m: m.user.email if m.user else "invitee@uni.example.edu")
    role = Membership.Role.STUDENT
    status = Membership.Status.ACTIVE


class TemplateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = WorkspaceTemplate
        django_get_or_create = ["slug"]

    slug = "ml-cpu-student"
    name = "ML CPU workspace"
    instance_type = "t3.medium"
    image = AL2023


class ApprovedTemplateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ApprovedTemplate

    course = factory.SubFactory(CourseFactory)
    template = factory.SubFactory(TemplateFactory)
