"""REST API for messages and the help queue. Thin: rules are in courses/inbox.py
and courses/help_queue.py; refusals come back as field errors."""

from django.core.exceptions import PermissionDenied
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from courses import help_queue as queue
from courses import help_serializers as s
from courses import inbox
from courses.models import Membership
from courses.policy import Action
from courses.services import membership_get_active

_REFUSALS = {403: OpenApiResponse(description="Your role does not allow this"),
             404: OpenApiResponse(description="Not found, or not visible to you")}


class Conflict(APIException):
    status_code = 409
    default_code = "conflict"


def _refused(errors: dict[str, str], code: int = 400) -> APIException:
    detail = {(k or "non_field_errors"): [v] for k, v in errors.items()}
    if code == 409:
        return Conflict(detail)
    return serializers.ValidationError(detail)


class MyMessagesView(APIView):
    @extend_schema(parameters=[s.MessageListQuerySerializer],
                   responses={200: s.MessageSerializer(many=True)},
                   summary="Messages course staff sent me, newest first")
    def get(self, request):
        query = s.MessageListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = inbox.messages_of_user(user=request.user,
                                      unread_only=query.validated_data["unread"])
        pager = LimitOffsetPagination()
        page = pager.paginate_queryset(rows, request, view=self)
        return pager.get_paginated_response(s.MessageSerializer(page, many=True).data)


class MessageReadView(APIView):
    @extend_schema(request=None, responses={200: s.MessageSerializer, **_REFUSALS},
                   summary="Mark one of my messages read")
    def post(self, request, message_id: int):
        message = inbox.message_get_for(user=request.user, message_id=message_id)
        return Response(s.MessageSerializer(inbox.message_read(message=message)).data)


class MemberMessagesView(APIView):
    @extend_schema(request=s.MessageSendSerializer,
                   responses={201: s.MessageSerializer, 400: OpenApiResponse(
                       description="Field errors"), **_REFUSALS},
                   summary="Write to a student of the course (instructors, head TAs, TAs)")
    def post(self, request, course_id: int, membership_id: int):
        actor = membership_get_active(user=request.user, course_id=course_id)
        recipient = Membership.objects.filter(pk=membership_id, course_id=course_id).first()
        if actor is None or recipient is None:
            raise Http404("No such member.")
        form = s.MessageSendSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            message = inbox.message_send(sender=actor, recipient=recipient,
                                         **form.validated_data)
        except inbox.InboxError as error:
            raise _refused(error.errors) from error
        return Response(s.MessageSerializer(message).data, status=status.HTTP_201_CREATED)


class CourseHelpView(APIView):
    @extend_schema(responses={200: s.HelpRequestSerializer(many=True), **_REFUSALS},
                   summary="The course's waiting help requests, oldest first (course staff)")
    def get(self, request, course_id: int):
        actor = queue.help_actor(user=request.user, course_id=course_id,
                                 action=Action.VIEW_HELP_QUEUE)
        rows = queue.help_queue_list(course=actor.course)
        return Response(s.HelpRequestSerializer(rows, many=True).data)

    @extend_schema(request=s.HelpOpenSerializer,
                   responses={201: s.HelpRequestSerializer,
                              400: OpenApiResponse(description="Field errors"),
                              409: OpenApiResponse(description="You already have one waiting"),
                              **_REFUSALS},
                   summary="Ask the course's TAs for help (students)")
    def post(self, request, course_id: int):
        actor = queue.help_actor(user=request.user, course_id=course_id,
                                 action=Action.OPEN_HELP_REQUEST)
        form = s.HelpOpenSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            found = queue.help_request_open(actor=actor, **form.validated_data)
        except queue.HelpError as error:
            raise _refused({("workspace_id" if k == "workspace" else k): v
                            for k, v in error.errors.items()}, error.status) from error
        return Response(s.HelpRequestSerializer(found).data, status=status.HTTP_201_CREATED)


def _change(request, course_id: int, request_id: int, change, **kwargs) -> Response:
    actor = membership_get_active(user=request.user, course_id=course_id)
    if actor is None:
        raise Http404("No such course.")
    found = queue.help_request_get(course_id=course_id, request_id=request_id)
    try:
        done = change(request=found, actor=actor, **kwargs)
    except queue.HelpError as error:
        raise _refused(error.errors, error.status) from error
    return Response(s.HelpRequestSerializer(done).data)


def _staff(request, course_id: int) -> None:
    queue.help_actor(user=request.user, course_id=course_id, action=Action.HANDLE_HELP)


_CHANGED = {200: s.HelpRequestSerializer,
            409: OpenApiResponse(description="Someone else changed it first"), **_REFUSALS}


class HelpClaimView(APIView):
    @extend_schema(request=None, responses=_CHANGED, summary="Claim an open request (staff)")
    def post(self, request, course_id: int, request_id: int):
        _staff(request, course_id)
        return _change(request, course_id, request_id, queue.help_request_claim)


class HelpReleaseView(APIView):
    @extend_schema(request=None, responses=_CHANGED,
                   summary="Put a claimed request back in the queue (staff)")
    def post(self, request, course_id: int, request_id: int):
        _staff(request, course_id)
        return _change(request, course_id, request_id, queue.help_request_release)


class HelpResolveView(APIView):
    @extend_schema(request=s.HelpResolveSerializer, responses=_CHANGED,
                   summary="Resolve a request with a note for the student (staff)")
    def post(self, request, course_id: int, request_id: int):
        _staff(request, course_id)
        form = s.HelpResolveSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        return _change(request, course_id, request_id, queue.help_request_resolve,
                       note=form.validated_data["note"])


class HelpCancelView(APIView):
    @extend_schema(request=None, responses=_CHANGED,
                   summary="Withdraw my own waiting request (the student who asked)")
    def post(self, request, course_id: int, request_id: int):
        actor = membership_get_active(user=request.user, course_id=course_id)
        found = (queue.help_request_get(course_id=course_id, request_id=request_id)
                 if actor else None)
        if found is None or found.membership_id != actor.pk:
            raise Http404("No such help request.")
        try:
            done = queue.help_request_cancel(request=found, actor=actor)
        except (queue.HelpError, PermissionDenied) as error:
            raise _refused({"": str(error)}, 409) from error
        return Response(s.HelpRequestSerializer(done).data)
