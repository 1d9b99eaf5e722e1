from django.urls import path

from provisioning import views

urlpatterns = [
    path("courses/<int:course_id>/launch/", views.launch, name="workspace-launch"),
    path("courses/<int:course_id>/templates/<slug:slug>/estimate/", views.estimate,
         name="template-estimate"),
    path("workspaces/<int:workspace_id>/", views.detail, name="workspace-detail"),
    path("workspaces/<int:workspace_id>/stop/", views.stop, name="workspace-stop"),
    path("workspaces/<int:workspace_id>/start/", views.start, name="workspace-start"),
    path("workspaces/<int:workspace_id>/hibernate/", views.hibernate, name="workspace-hibernate"),
    path("workspaces/<int:workspace_id>/reset/", views.reset, name="workspace-reset"),
    path("workspaces/<int:workspace_id>/delete/", views.delete, name="workspace-delete"),
]
