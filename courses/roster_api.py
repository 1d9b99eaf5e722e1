"""REST API for the roster. Thin: access and rules are in courses/roster.py."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from courses import roster
from courses import roster_serializers as s
from courses.policy import Action

_REFUSALS = {403: OpenApiResponse(description="Your role does not allow this"),
             404: OpenApiResponse(description="Not found, or not visible to you")}


def _refused(error: roster.RosterError) -> serializers.ValidationError:
    return serializers.ValidationError({k: [v] for k, v in error.errors.items()})


class CourseMembersView(APIView):
    @extend_schema(parameters=[s.MemberListQuerySerializer],
                   responses={200: s.MemberSerializer(many=True), **_REFUSALS},
                   summary="The course's roster (course staff)")
    def get(self, request, course_id: int):
        actor = roster.roster_actor(user=request.user, course_id=course_id,
                                    action=Action.VIEW_ROSTER)
        query = s.MemberListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        members = roster.roster_list(course=actor.course, **query.validated_data)
        pager = LimitOffsetPagination()
        page = pager.paginate_queryset(members, request, view=self)
        return pager.get_paginated_response(s.MemberSerializer(page, many=True).data)

    @extend_schema(request=s.MemberAddSerializer,
                   responses={201: s.MemberSerializer, 400: OpenApiResponse(
                       description="Field errors"), **_REFUSALS},
                   summary="Add one person and email them an invitation (instructors, head TAs)")
    def post(self, request, course_id: int):
        actor = roster.roster_actor(user=request.user, course_id=course_id,
                                    action=Action.MANAGE_ROSTER)
        form = s.MemberAddSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            member = roster.membership_invite(course=actor.course, actor=actor,
                                              **form.validated_data)
        except roster.RosterError as error:
            raise _refused(error) from error
        return Response(s.MemberSerializer(member).data, status=status.HTTP_201_CREATED)


def _member_change(request, course_id: int, membership_id: int, service) -> Response:
    actor = roster.roster_actor(user=request.user, course_id=course_id,
                                action=Action.MANAGE_ROSTER)
    member = roster.roster_member_get(course_id=course_id, membership_id=membership_id)
    try:
        member = service(membership=member, actor=actor)
    except roster.RosterError as error:
        raise _refused(error) from error
    return Response(s.MemberSerializer(member).data)


class MemberRevokeView(APIView):
    @extend_schema(request=None, responses={200: s.MemberSerializer, **_REFUSALS},
                   summary="Revoke a member: no more access, running workspaces stop")
    def post(self, request, course_id: int, membership_id: int):
        return _member_change(request, course_id, membership_id, roster.membership_revoke)


class MemberReinviteView(APIView):
    @extend_schema(request=None, responses={200: s.MemberSerializer, **_REFUSALS},
                   summary="Send the invitation again (also re-admits a revoked member)")
    def post(self, request, course_id: int, membership_id: int):
        return _member_change(request, course_id, membership_id, roster.membership_reinvite)


class CourseSectionsView(APIView):
    @extend_schema(responses={200: s.SectionSerializer(many=True), **_REFUSALS},
                   summary="The course's sections (course staff)")
    def get(self, request, course_id: int):
        actor = roster.roster_actor(user=request.user, course_id=course_id,
                                    action=Action.VIEW_ROSTER)
        return Response(s.SectionSerializer(actor.course.sections.all(), many=True).data)

    @extend_schema(request=s.SectionSerializer, responses={201: s.SectionSerializer,
                                                           **_REFUSALS},
                   summary="Add a section (instructors, head TAs)")
    def post(self, request, course_id: int):
        actor = roster.roster_actor(user=request.user, course_id=course_id,
                                    action=Action.MANAGE_ROSTER)
        form = s.SectionSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            section = roster.section_create(course=actor.course, name=form.validated_data["name"])
        except roster.RosterError as error:
            raise _refused(error) from error
        return Response(s.SectionSerializer(section).data, status=status.HTTP_201_CREATED)


class RosterImportPreviewView(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(request={"multipart/form-data": s.ImportUploadSerializer},
                   responses={200: s.ImportPreviewSerializer, **_REFUSALS},
                   summary="What importing a roster CSV would do, row by row (changes nothing)")
    def post(self, request, course_id: int):
        actor = roster.roster_actor(user=request.user, course_id=course_id,
                                    action=Action.MANAGE_ROSTER)
        preview = roster.roster_import_preview(course=actor.course, actor=actor,
                                               data=_upload(request))
        return Response(s.ImportPreviewSerializer(preview).data)


class RosterImportCommitView(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(request={"multipart/form-data": s.ImportUploadSerializer},
                   responses={201: s.ImportResultSerializer,
                              400: s.ImportRefusedSerializer,
                              409: s.ImportRefusedSerializer, **_REFUSALS},
                   summary="Import a roster CSV: every row, or nothing if any row has an error")
    def post(self, request, course_id: int):
        actor = roster.roster_actor(user=request.user, course_id=course_id,
                                    action=Action.MANAGE_ROSTER)
        try:
            result = roster.roster_import_commit(
                course=actor.course, actor=actor, data=_upload(request),
                expected_digest=request.data.get("digest", ""))
        except roster.ImportRefused as refused:
            code = 409 if isinstance(refused, roster.ImportStale) else 400
            return Response({"detail": str(refused),
                             "preview": s.ImportPreviewSerializer(refused.preview).data},
                            status=code)
        return Response(s.ImportResultSerializer(result).data, status=status.HTTP_201_CREATED)


def _upload(request) -> bytes:
    form = s.ImportUploadSerializer(data=request.data)
    form.is_valid(raise_exception=True)
    upload = form.validated_data["file"]
    if upload.size > roster.MAX_BYTES:
        raise serializers.ValidationError({"file": [roster.too_big_message(upload.size)]})
    return upload.read()
