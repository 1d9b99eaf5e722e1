"""REST API for the caller's own SSH key. No endpoint takes a user: it is always yours."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from provisioning import keys
from provisioning.serializers import (
    GeneratedKeySerializer,
    KeyPairSerializer,
    KeyUploadSerializer,
)


class KeyView(APIView):
    @extend_schema(responses={200: KeyPairSerializer, 404: OpenApiResponse(
        description="You have no SSH key yet")}, summary="Your SSH public key")
    def get(self, request):
        key = keys.key_get(user=request.user)
        if key is None:
            raise NotFound("You have no SSH key yet.")
        return Response(KeyPairSerializer(key).data)

    @extend_schema(request=KeyUploadSerializer, responses={200: KeyPairSerializer},
                   summary="Upload your SSH public key (replaces the current one)")
    def post(self, request):
        form = KeyUploadSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            key = keys.key_upload(user=request.user,
                                  public_key=form.validated_data["public_key"])
        except keys.KeyRefused as refusal:
            raise serializers.ValidationError({refusal.field: [refusal.message]}) from None
        return Response(KeyPairSerializer(key).data)

    @extend_schema(request=None, responses={204: None}, summary="Remove your SSH key")
    def delete(self, request):
        if not keys.key_delete(user=request.user):
            raise NotFound("You have no SSH key.")
        return Response(status=status.HTTP_204_NO_CONTENT)


class KeyGenerateView(APIView):
    @extend_schema(request=None, responses={201: GeneratedKeySerializer},
                   summary="Make a new ed25519 key; the private key is in this answer only")
    def post(self, request):
        try:
            key, private_key = keys.key_generate(user=request.user)
        except keys.KeyRefused as refusal:
            raise serializers.ValidationError({"detail": refusal.message}) from None
        data = {**KeyPairSerializer(key).data, "private_key": private_key.decode(),
                "private_key_filename": keys.GENERATED_FILENAME}
        response = Response(GeneratedKeySerializer(data).data, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response
