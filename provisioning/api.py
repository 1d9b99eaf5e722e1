"""REST API for workspaces. Thin: access in provisioning.access, work in services."""

from django.http import Http404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, NotAuthenticated
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from courses.policy import Action
from courses.services import membership_get_active
from provisioning import agent, lifecycle, services, slots
from provisioning.access import workspace_get_for, workspaces_visible_to
from provisioning.serializers import (
    HeartbeatSerializer,
    LaunchSerializer,
    TemplateOfferSerializer,
    WorkspaceDetailSerializer,
    WorkspaceSerializer,
)


class Refused(APIException):
    def __init__(self, message: str, *, status_code: int, field: str | None):
        self.status_code = status_code
        detail = {"detail": message}
        if field:
            detail[field] = [message]
        super().__init__(detail)


class CourseTemplatesView(APIView):
    @extend_schema(responses=TemplateOfferSerializer(many=True),
                   summary="Templates the course approved, with prices")
    def get(self, request, course_id: int):
        membership = membership_get_active(user=request.user, course_id=course_id)
        if membership is None:
            raise Http404
        offers = services.course_template_offers(course_ids=[course_id])[course_id]
        return Response(TemplateOfferSerializer(offers, many=True).data)


class WorkspaceViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = WorkspaceSerializer

    def get_queryset(self):
        return (workspaces_visible_to(self.request.user)
                .select_related("owner", "template").order_by("-created_at"))

    def get_object(self):
        return workspace_get_for(user=self.request.user, workspace_id=self.kwargs["pk"],
                                 action=Action.VIEW_WORKSPACE)

    def get_serializer_class(self):
        return WorkspaceDetailSerializer if self.action == "retrieve" else WorkspaceSerializer

    @extend_schema(request=LaunchSerializer,
                   responses={201: WorkspaceSerializer,
                              403: OpenApiResponse(description="Template not approved")},
                   summary="Launch a workspace from an approved template")
    def create(self, request):
        form = LaunchSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        membership = membership_get_active(user=request.user,
                                           course_id=form.validated_data["course"])
        if membership is None:
            raise Http404
        try:
            workspace = services.workspace_launch(
                membership=membership, template_slug=form.validated_data["template"],
                name=form.validated_data["name"], actor=request.user,
                market=form.validated_data["market"])
        except services.LaunchRefused as refusal:
            raise Refused(refusal.message, status_code=refusal.status,
                          field=refusal.field) from refusal
        return Response(WorkspaceSerializer(workspace).data, status=status.HTTP_201_CREATED)

    def _operate(self, request, pk, operation, action: Action = Action.OPERATE_WORKSPACE):
        workspace = workspace_get_for(user=request.user, workspace_id=pk, action=action)
        try:
            operation(workspace=workspace, actor=request.user)
        except services.TransitionError as exc:
            raise Refused(str(exc), status_code=409, field=None) from exc
        return Response(WorkspaceSerializer(workspace).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: WorkspaceSerializer}, summary="Stop a workspace")
    @action(detail=True, methods=["post"])
    def stop(self, request, pk=None):
        return self._operate(request, pk, services.workspace_stop)

    @extend_schema(request=None, responses={202: WorkspaceSerializer},
                   summary="Start a stopped workspace")
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        return self._operate(request, pk, services.workspace_start)

    @extend_schema(request=None, responses={202: WorkspaceSerializer},
                   summary="Hibernate a running workspace (a plain stop if AWS refuses)")
    @action(detail=True, methods=["post"])
    def hibernate(self, request, pk=None):
        return self._operate(request, pk, lifecycle.workspace_hibernate)

    @extend_schema(request=None, responses={202: WorkspaceSerializer},
                   summary="Reset: back up, replace the machine, keep the home volume")
    @action(detail=True, methods=["post"])
    def reset(self, request, pk=None):
        return self._operate(request, pk, lifecycle.workspace_reset,
                             action=Action.RESET_WORKSPACE)

    @extend_schema(request=None, responses={202: WorkspaceSerializer},
                   summary="Delete a workspace (its home volume is backed up, then deleted)")
    def destroy(self, request, pk=None):
        return self._operate(request, pk, lifecycle.workspace_terminate,
                             action=Action.DELETE_WORKSPACE)

    @extend_schema(request=None, responses={202: WorkspaceSerializer},
                   summary="Take a queued workspace out of its slot queue")
    @action(detail=True, methods=["post"], url_path="leave-queue")
    def leave_queue(self, request, pk=None):
        return self._operate(request, pk, slots.queue_leave)


class HeartbeatView(APIView):
    """The activity agent's report. The workspace's agent token is the only credential:
    no session, so no CSRF; refused tokens are 403 whether or not the workspace exists."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(request=HeartbeatSerializer,
                   parameters=[OpenApiParameter("workspace_id", int, OpenApiParameter.PATH)],
                   responses={200: OpenApiResponse(description="Recorded or ignored (too soon)"),
                              403: OpenApiResponse(description="Wrong token"),
                              409: OpenApiResponse(description="Workspace not running")},
                   summary="Activity heartbeat from a workspace's agent")
    def post(self, request, workspace_id: int):
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthenticated("Send the workspace's agent token as 'Authorization: Bearer …'.")
        form = HeartbeatSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        report = {k: (v.isoformat() if hasattr(v, "isoformat") else v)
                  for k, v in form.validated_data.items()}
        try:
            beat = agent.heartbeat_record(workspace_id=int(workspace_id), token=token.strip(),
                                          report=report, now=timezone.now())
        except agent.AgentRefused as refusal:
            raise Refused(refusal.message, status_code=refusal.status, field=None) from refusal
        return Response({"recorded": beat.recorded, "active": beat.active})
