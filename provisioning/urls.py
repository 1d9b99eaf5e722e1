from django.urls import path, re_path

from provisioning import key_views, views
from provisioning.api import HeartbeatView

urlpatterns = [
    path("courses/<int:course_id>/launch/", views.launch, name="workspace-launch"),
    path("courses/<int:course_id>/templates/<slug:slug>/estimate/", views.estimate,
         name="template-estimate"),
    path("workspaces/<int:workspace_id>/", views.detail, name="workspace-detail"),
    path("workspaces/<int:workspace_id>/stop/", views.stop, name="workspace-stop"),
    path("workspaces/<int:workspace_id>/start/", views.start, name="workspace-start"),
    path("account/keys/", key_views.ssh_keys, name="ssh-keys"),
    path("account/keys/upload/", key_views.ssh_key_upload, name="ssh-key-upload"),
    path("account/keys/generate/", key_views.ssh_key_generate, name="ssh-key-generate"),
    path("account/keys/delete/", key_views.ssh_key_delete, name="ssh-key-delete"),
    # The activity agent posts here (with or without the trailing slash).
    re_path(r"^api/workspaces/(?P<workspace_id>\d+)/heartbeat/?$", HeartbeatView.as_view(),
            name="workspace-heartbeat"),
    path("workspaces/<int:workspace_id>/leave-queue/", views.leave_queue,
         name="workspace-leave-queue"),
    path("courses/<int:course_id>/slots/", views.slots_page, name="course-slots"),
    path("workspaces/<int:workspace_id>/hibernate/", views.hibernate, name="workspace-hibernate"),
    path("workspaces/<int:workspace_id>/reset/", views.reset, name="workspace-reset"),
    path("workspaces/<int:workspace_id>/delete/", views.delete, name="workspace-delete"),
]
