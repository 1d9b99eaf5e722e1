"""Course API: create a course, read and change its settings and approved
templates, duplicate it for next term. Thin: rules in courses.setup and
provisioning.approvals, composed by lens.course_setup.

Roles as on the pages: creating needs `courses.add_course`; reading is for the
course's staff; changing and duplicating for its instructor; students 403,
outsiders 404.
"""

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from courses import setup, workshops
from courses.models import Course, Membership
from courses.policy import Action
from lens import serializers as s
from lens.course_setup import course_setup_create, course_setup_duplicate, course_setup_update
from provisioning.serializers import ApprovedTemplateSerializer

_DENIED = {403: OpenApiResponse(description="Your role does not allow it"),
           404: OpenApiResponse(description="Not a member of this course")}


def _service_errors(error: DjangoValidationError) -> ValidationError:
    return ValidationError(error.message_dict)


def _approvals(data: dict):
    lines = data.get("approved_templates")
    return None if lines is None else ApprovedTemplateSerializer.approvals(lines)


class CourseViewSet(viewsets.ViewSet):
    serializer_class = s.CourseSerializer
    lookup_value_regex = r"\d+"

    def _course(self, pk, action_):
        return setup.course_actor_get(user=self.request.user, course_id=int(pk),
                                      action=action_).course

    @extend_schema(responses=s.CourseListSerializer(many=True),
                   summary="The courses you are an active member of, with your role")
    def list(self, request):
        memberships = (Membership.objects.active().of_user(request.user)
                       .select_related("course").order_by("course__code"))
        return Response(s.CourseListSerializer(memberships, many=True).data)

    @extend_schema(request=s.CourseSerializer, responses={201: s.CourseSerializer,
                                                          403: _DENIED[403]},
                   summary="Create a course (needs the courses.add_course permission); "
                           "you become its instructor")
    def create(self, request):
        if not request.user.has_perm(setup.CREATE_PERMISSION):
            raise PermissionDenied("You may not create courses.")
        form = s.CourseSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            course = course_setup_create(creator=request.user, values=form.validated_data,
                                         approvals=_approvals(form.validated_data) or [])
        except DjangoValidationError as error:
            raise _service_errors(error) from error
        return Response(s.CourseSerializer(s.CourseSerializer.data_of(course)).data,
                        status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: s.CourseSerializer, **_DENIED},
                   summary="A course's settings and approved templates (course staff)")
    def retrieve(self, request, pk=None):
        course = self._course(pk, Action.VIEW_SETTINGS)
        return Response(s.CourseSerializer(s.CourseSerializer.data_of(course)).data)

    def _update(self, request, pk, partial):
        course = self._course(pk, Action.MANAGE_COURSE)
        form = s.CourseSerializer(data=request.data, partial=partial,
                                  context={"course": course})
        form.is_valid(raise_exception=True)
        try:
            course_setup_update(course=course, values=form.validated_data,
                                approvals=_approvals(form.validated_data))
        except DjangoValidationError as error:
            raise _service_errors(error) from error
        return Response(s.CourseSerializer(s.CourseSerializer.data_of(course)).data)

    @extend_schema(request=s.CourseSerializer, responses={200: s.CourseSerializer, **_DENIED},
                   summary="Set a course's settings; optional fields left out keep their values "
                           "(instructor)")
    def update(self, request, pk=None):
        return self._update(request, pk, partial=False)

    @extend_schema(request=s.CourseSerializer, responses={200: s.CourseSerializer, **_DENIED},
                   summary="Change some of a course's settings or its approved list "
                           "(instructor)")
    def partial_update(self, request, pk=None):
        return self._update(request, pk, partial=True)

    @extend_schema(request=s.CourseDuplicateSerializer,
                   responses={201: s.CourseSerializer, **_DENIED},
                   summary="Copy a course for another term: settings, approved templates and "
                           "staff, not students or spending (instructor)")
    @action(detail=True, methods=["post"])
    def duplicate(self, request, pk=None):
        source = self._course(pk, Action.MANAGE_COURSE)
        if not request.user.has_perm(setup.CREATE_PERMISSION):
            raise PermissionDenied("You may not create courses.")
        form = s.CourseDuplicateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            course = course_setup_duplicate(source=source, creator=request.user,
                                            values=form.validated_data)
        except DjangoValidationError as error:
            raise _service_errors(error) from error
        return Response(s.CourseSerializer(s.CourseSerializer.data_of(course)).data,
                        status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: s.WorkshopCodeSerializer, **_DENIED},
                   summary="A workshop's access code and join link; POST makes a new code and "
                           "the old one stops working (instructor)")
    @action(detail=True, methods=["get", "post"], url_path="access-code")
    def access_code(self, request, pk=None):
        course = self._course(pk, Action.MANAGE_WORKSHOP_CODE)
        if course.kind != Course.Kind.WORKSHOP:
            raise ValidationError({"kind": ["Only workshops have an access code."]})
        if request.method == "POST":
            workshops.workshop_code_regenerate(course=course)
        return Response(s.WorkshopCodeSerializer.data_of(course, request))
