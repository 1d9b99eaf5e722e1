"""API for budgets: a member's money and ledger, cap changes, adjustments, estimates."""

import uuid

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.models import LedgerEntry
from courses.policy import Action
from courses.services import membership_get_active, membership_get_for
from lens import serializers as s
from lens.budgets import member_adjustment_grant, member_cap_change
from provisioning import services
from provisioning.metering import member_money_get as member_money


class MemberBudgetView(APIView):
    @extend_schema(responses=s.MemberMoneySerializer, summary="A member's cap, spend and room")
    def get(self, request, membership_id: int):
        member = membership_get_for(user=request.user, membership_id=membership_id,
                                    action=Action.VIEW_MONEY)
        return Response(s.MemberMoneySerializer(member_money(member)).data)


class MemberLedgerView(APIView):
    @extend_schema(responses=s.LedgerEntrySerializer(many=True),
                   summary="A member's ledger lines, newest first")
    def get(self, request, membership_id: int):
        member = membership_get_for(user=request.user, membership_id=membership_id,
                                    action=Action.VIEW_MONEY)
        lines = (LedgerEntry.objects.filter(membership=member).select_related("actor")
                 .order_by("-created_at", "-pk")[:500])
        return Response(s.LedgerEntrySerializer(lines, many=True).data)


class MemberCapView(APIView):
    @extend_schema(request=s.CapChangeSerializer, responses=s.MemberMoneySerializer,
                   summary="Change a member's cap (instructors)")
    def post(self, request, membership_id: int):
        member = membership_get_for(user=request.user, membership_id=membership_id,
                                    action=Action.MANAGE_BUDGET)
        form = s.CapChangeSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        member_cap_change(membership=member, cap=form.validated_data["cap"], actor=request.user,
                          reason=form.validated_data["reason"],
                          key=form.validated_data.get("key") or uuid.uuid4().hex)
        return Response(s.MemberMoneySerializer(member_money(member)).data)


class MemberAdjustmentView(APIView):
    @extend_schema(request=s.AdjustmentSerializer, responses=s.MemberMoneySerializer,
                   summary="Credit or charge a member (instructors)")
    def post(self, request, membership_id: int):
        member = membership_get_for(user=request.user, membership_id=membership_id,
                                    action=Action.MANAGE_BUDGET)
        form = s.AdjustmentSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        member_adjustment_grant(membership=member, amount=form.validated_data["amount"],
                                actor=request.user, reason=form.validated_data["reason"],
                                key=form.validated_data.get("key") or uuid.uuid4().hex)
        return Response(s.MemberMoneySerializer(member_money(member)).data, status=201)


class TemplateEstimateView(APIView):
    @extend_schema(parameters=[s.EstimateQuerySerializer], responses=s.EstimateSerializer,
                   summary="What a template costs per session, week and month")
    def get(self, request, course_id: int, slug: str):
        membership = membership_get_active(user=request.user, course_id=course_id)
        if membership is None:
            raise Http404
        offer = services.course_offer_get(membership=membership, template_slug=slug)
        if offer is None:
            raise Http404
        query = s.EstimateQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        plan = services.offer_estimate(offer=offer, membership=membership,
                                       session_hours=query.validated_data["hours"],
                                       sessions_per_week=query.validated_data["sessions"])
        if plan is None:
            raise Http404("No price for this template.")
        return Response(s.EstimateSerializer(plan).data)
