"""The live-update websocket, through the real ASGI app and the Redis channel layer."""

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from channels_redis.core import RedisChannelLayer
from django.conf import settings

from lens.asgi import application
from provisioning.broadcast import broadcast_member_workspaces
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


def session_cookie(client, membership) -> bytes:
    assert client.login(username=membership.user.username, password=PASSWORD)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"\
        .encode()


def communicator(path, cookie: bytes | None):
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    if cookie:
        headers.append((b"cookie", cookie))
    return WebsocketCommunicator(application, path, headers=headers)


async def _connect_and_receive(path, cookie, membership_id):
    comm = communicator(path, cookie)
    connected, _ = await comm.connect()
    assert connected
    from channels.db import database_sync_to_async

    await database_sync_to_async(broadcast_member_workspaces)(membership_id=membership_id)
    message = await comm.receive_from(timeout=5)
    await comm.disconnect()
    return message


async def _refused(path, cookie):
    comm = communicator(path, cookie)
    connected, code = await comm.connect()
    await comm.disconnect()
    return connected, code


def test_the_channel_layer_is_redis():
    assert isinstance(get_channel_layer(), RedisChannelLayer)


def test_the_owner_receives_their_workspace_list_over_redis(client, student, approved):
    cookie = session_cookie(client, student)

    html = async_to_sync(_connect_and_receive)(f"/ws/members/{student.pk}/", cookie, student.pk)

    assert f'id="workspaces-{student.pk}"' in html
    assert "No workspaces yet" in html


def test_student_b_cannot_subscribe_to_student_a(client, student, other_student):
    cookie = session_cookie(client, other_student)

    connected, code = async_to_sync(_refused)(f"/ws/members/{student.pk}/", cookie)

    assert not connected
    assert code == 4403


def test_an_anonymous_socket_is_refused(student):
    connected, code = async_to_sync(_refused)(f"/ws/members/{student.pk}/", None)

    assert (connected, code) == (False, 4403)
