"""REST API for requests and approvals. Thin: access and rules are in
courses/approvals.py. Outsiders 404; a role that may not → 403."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException
from rest_framework.response import Response
from rest_framework.views import APIView

from courses import approval_serializers as s
from courses import approvals as service
from courses.policy import Action, membership_may
from courses.setup import local_instant

_REFUSALS = {403: OpenApiResponse(description="Your role does not allow this"),
             404: OpenApiResponse(description="Not found, or not visible to you")}


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request was already decided or withdrawn."


def _field_errors(error: DjangoValidationError) -> serializers.ValidationError:
    return serializers.ValidationError(error.message_dict)


class CourseApprovalsView(APIView):
    @extend_schema(responses={200: s.ApprovalSerializer(many=True), **_REFUSALS},
                   summary="Requests: staff see the course's pending and recently decided "
                           "ones, other members their own")
    def get(self, request, course_id: int):
        actor = service.approvals_actor(user=request.user, course_id=course_id,
                                        action=Action.REQUEST_APPROVAL)
        if membership_may(actor=actor, action=Action.VIEW_APPROVALS):
            pending, decided = service.approvals_for_staff(course=actor.course)
            rows = pending + decided
        else:
            rows = service.approvals_of_member(membership=actor)
        return Response(s.ApprovalSerializer(rows, many=True).data)

    @extend_schema(request=s.ApprovalRequestSerializer,
                   responses={201: s.ApprovalSerializer,
                              400: OpenApiResponse(description="Field errors"), **_REFUSALS},
                   summary="Ask for a template that needs approval, or for more budget, "
                           "with a reason (for yourself)")
    def post(self, request, course_id: int):
        actor = service.approvals_actor(user=request.user, course_id=course_id,
                                        action=Action.REQUEST_APPROVAL)
        form = s.ApprovalRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            approval = service.approval_request(membership=actor, **form.validated_data)
        except DjangoValidationError as error:
            raise _field_errors(error) from error
        return Response(s.ApprovalSerializer(approval).data, status=status.HTTP_201_CREATED)


class ApprovalDecideView(APIView):
    @extend_schema(request=s.ApprovalDecideSerializer,
                   responses={200: s.ApprovalSerializer,
                              400: OpenApiResponse(description="Field errors"),
                              409: OpenApiResponse(description="Already decided or withdrawn"),
                              **_REFUSALS},
                   summary="Approve (optionally until a moment) or deny a pending request "
                           "(instructors; head TAs where the course allows)")
    def post(self, request, course_id: int, approval_id: int):
        approval, actor = service.approval_get_for(user=request.user, course_id=course_id,
                                                   approval_id=approval_id,
                                                   action=Action.DECIDE_APPROVAL)
        form = s.ApprovalDecideSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        expires = data["expires_at"]
        if expires is not None and expires.tzinfo is None:
            expires = local_instant(expires, actor.course.time_zone)
        try:
            approval = service.approval_decide(approval=approval, actor=actor,
                                               approve=data["decision"] == "approve",
                                               expires_at=expires, note=data["note"])
        except DjangoValidationError as error:
            raise _field_errors(error) from error
        except service.ApprovalConflict as conflict:
            raise Conflict(str(conflict)) from conflict
        return Response(s.ApprovalSerializer(approval).data)


class ApprovalWithdrawView(APIView):
    @extend_schema(request=None, responses={200: s.ApprovalSerializer, 409: OpenApiResponse(
                       description="Already decided or withdrawn"), **_REFUSALS},
                   summary="Withdraw your own pending request")
    def post(self, request, course_id: int, approval_id: int):
        approval, actor = service.approval_get_for(user=request.user, course_id=course_id,
                                                   approval_id=approval_id,
                                                   action=Action.REQUEST_APPROVAL)
        try:
            approval = service.approval_withdraw(approval=approval, actor=actor)
        except service.ApprovalConflict as conflict:
            raise Conflict(str(conflict)) from conflict
        return Response(s.ApprovalSerializer(approval).data)
