from django.contrib import admin, messages
from django.db import models, transaction
from django.utils.html import format_html

from courses.lti import lti_tool_urls
from courses.models import (
    Approval,
    Course,
    LtiContext,
    LtiPlatform,
    LtiToolKey,
    Membership,
    Section,
)
from courses.tasks import lti_roster_sync_task


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    fields = ["email", "name", "role", "section", "budget_cap", "status", "user"]
    raw_id_fields = ["user"]


class SectionInline(admin.TabularInline):
    model = Section
    extra = 0
    fields = ["name"]


@admin.register(Course)
class CourseAdmin(admin.ModelAdmin):
    list_display = ["code", "title", "term_label", "kind", "status", "region"]
    list_filter = ["kind", "status"]
    search_fields = ["code", "title"]
    inlines = [SectionInline, MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["email", "course", "role", "section", "status"]
    list_filter = ["role", "status", "course"]
    search_fields = ["email", "name"]
    raw_id_fields = ["user"]


@admin.register(Approval)
class ApprovalAdmin(admin.ModelAdmin):
    """Read here; decided on the course's requests page (which moves caps and emails)."""

    list_display = ["pk", "course", "membership", "kind", "template_slug", "amount", "status",
                    "expires_at", "created_at"]
    list_filter = ["status", "kind", "course"]
    search_fields = ["membership__email", "template_slug", "reason"]
    raw_id_fields = ["membership", "decided_by"]
    readonly_fields = ["status", "granted_amount", "decided_by", "decided_at",
                       "notified_status", "seen_at"]


# --- LTI 1.3 -------------------------------------------------------------------


@admin.register(LtiPlatform)
class LtiPlatformAdmin(admin.ModelAdmin):
    list_display = ["name", "issuer", "client_id", "is_active"]
    list_filter = ["is_active"]
    search_fields = ["name", "issuer", "client_id"]
    readonly_fields = ["tool_urls"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fieldsets = [
        (None, {"fields": ["name", "is_active", "issuer", "client_id", "deployment_ids"]}),
        ("The LMS's endpoints", {"fields": ["auth_login_url", "auth_token_url",
                                            "token_audience", "jwks_url"]}),
        ("What to enter in the LMS", {"fields": ["tool_urls"]}),
    ]

    @admin.display(description="Lens's URLs")
    def tool_urls(self, obj):
        urls = lti_tool_urls()
        return format_html(
            "OpenID Connect login URL: <code>{}</code><br>Redirect / target link URI: "
            "<code>{}</code><br>Public JWK URL: <code>{}</code><br>Canvas configuration "
            "(\u201cEnter URL\u201d): <code>{}</code>",
            urls["login"], urls["launch"], urls["jwks"], urls["canvas_config"])


@admin.register(LtiContext)
class LtiContextAdmin(admin.ModelAdmin):
    list_display = ["__str__", "label", "course", "last_synced_at"]
    list_filter = ["platform"]
    search_fields = ["title", "label", "context_id", "course__code"]
    raw_id_fields = ["course"]
    readonly_fields = ["platform", "context_id", "deployment_id", "title", "label",
                       "memberships_url", "last_synced_at", "last_sync_report", "last_sync_error"]
    actions = ["sync_roster"]

    def has_add_permission(self, request):
        return False  # contexts come from launches

    @admin.action(description="Sync roster from the LMS")
    def sync_roster(self, request, queryset):
        contexts = list(queryset.exclude(course=None).exclude(memberships_url=""))
        for context in contexts:
            transaction.on_commit(lambda pk=context.pk: lti_roster_sync_task.delay(pk))
        self.message_user(request, f"Roster sync queued for {len(contexts)} linked LMS "
                                   f"course(s); unlinked ones and ones without a member list "
                                   f"were skipped.", messages.SUCCESS)


@admin.register(LtiToolKey)
class LtiToolKeyAdmin(admin.ModelAdmin):
    """The private half is never shown; a key is retired by unticking 'active'."""

    list_display = ["kid", "is_active", "created_at"]
    fields = ["kid", "public_jwk", "is_active", "created_at"]
    readonly_fields = ["kid", "public_jwk", "created_at"]

    def has_add_permission(self, request):
        return False  # made by Lens on first use (GET /lti/jwks/)
