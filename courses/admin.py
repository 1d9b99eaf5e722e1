from django.contrib import admin

from courses.models import Course, Membership, Section


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
