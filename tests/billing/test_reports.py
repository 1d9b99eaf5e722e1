"""Weekly reports: the figures, CSV, API, email once a week, who may read them, query counts."""

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from billing import reports
from billing.models import LedgerEntry, ReportDelivery
from billing.tasks import weekly_reports_send_task
from courses.models import Course, Membership
from tests.factories import PASSWORD, CourseFactory, MembershipFactory

NY = ZoneInfo("America/New_York")
# Friday 18 September 2026, noon in New York: the week is Sat 12 – Fri 18 Sep.
NOW = datetime(2026, 9, 18, 12, 0, tzinfo=NY).astimezone(UTC)
TERM_START = NOW - timedelta(weeks=4)
TERM_END = TERM_START + timedelta(weeks=15)
_keys = itertools.count()


def ny(*args) -> datetime:
    return datetime(*args, tzinfo=NY)


def spend(member, start, amount, *, until=None, workspace_id=None,
          kind=LedgerEntry.Kind.USAGE) -> LedgerEntry:
    """A ledger line written as metering (usage) or staff (adjustment) would."""
    return LedgerEntry.objects.create(
        membership=member, course_id=member.course_id, workspace_id=workspace_id, kind=kind,
        meter=LedgerEntry.Meter.COMPUTE if workspace_id else "", amount=Decimal(amount),
        interval_start=start, interval_end=until or start + timedelta(minutes=1),
        idempotency_key=f"test-report:{next(_keys)}")


def login(client, membership):
    assert client.login(username=membership.user.username, password=PASSWORD)


@pytest.fixture
def term(course):
    Course.objects.filter(pk=course.pk).update(starts_at=TERM_START, ends_at=TERM_END)
    course.refresh_from_db()
    return course


@pytest.fixture
def week_lines(term, student):
    """Known lines around midnights in New York (UTC is four hours ahead)."""
    spend(student, ny(2026, 8, 31, 10, 0), "3.00", workspace_id=7)  # August: term only
    spend(student, ny(2026, 9, 11, 22, 0), "5.00", workspace_id=7)  # before the week
    # 23:30 on Tuesday in New York is already Wednesday in UTC: it is Tuesday's.
    spend(student, ny(2026, 9, 15, 23, 30), "1.00", until=ny(2026, 9, 15, 23, 50),
          workspace_id=7)
    spend(student, ny(2026, 9, 16, 0, 10), "2.00", until=ny(2026, 9, 16, 0, 40), workspace_id=7)
    # One line from 23:00 Wednesday to 01:00 Thursday: an hour on each day.
    spend(student, ny(2026, 9, 16, 23, 0), "4.00", until=ny(2026, 9, 17, 1, 0), workspace_id=9)


def day_amounts(report):
    return {d.day.isoformat(): d.amount for d in report.days if d.amount}


# --- figures -----------------------------------------------------------------


def test_days_are_the_course_s_local_days_and_a_line_across_midnight_is_split(
        week_lines, student):
    report = reports.member_weekly_report(membership=student, end=NOW)

    assert (report.start.isoformat(), report.last_day.isoformat()) == ("2026-09-12", "2026-09-18")
    assert day_amounts(report) == {"2026-09-15": Decimal("1.00"), "2026-09-16": Decimal("4.00"),
                                   "2026-09-17": Decimal("2.00")}
    assert report.week_total == Decimal("7.00")


def test_month_and_term_to_date_include_what_came_before_the_week(week_lines, student):
    report = reports.member_weekly_report(membership=student, end=NOW)

    assert report.month_to_date == Decimal("12.00")
    assert report.term_to_date == Decimal("15.00")


def test_burn_is_spend_per_week_so_far_and_the_projection_adds_it_for_the_weeks_left(
        week_lines, student):
    report = reports.member_weekly_report(membership=student, end=NOW)

    # $15 over 4 weeks; 11 of the 15 weeks are left.
    assert report.burn_per_week == Decimal("3.75")
    assert report.projected_term_total == Decimal("15.00") + Decimal("3.75") * 11


def test_budget_status_compares_term_spend_with_the_cap(week_lines, student):
    Membership.objects.filter(pk=student.pk).update(budget_cap=Decimal("18.00"))
    student.refresh_from_db()

    report = reports.member_weekly_report(membership=student, end=NOW)

    assert report.cap == Decimal("18.00")
    assert report.percent == 83 and report.level == "warn"
    assert report.projected_over_cap


def test_there_is_no_projection_without_term_dates(course, student):
    spend(student, ny(2026, 9, 14, 10, 0), "2.00")

    report = reports.member_weekly_report(membership=student, end=NOW)

    assert report.projected_term_total is None
    assert report.burn_per_week >= Decimal("0")


def test_per_workspace_uses_names_given_by_the_caller_and_ids_otherwise(week_lines, student):
    plain = reports.member_weekly_report(membership=student, end=NOW)
    named = reports.member_weekly_report(membership=student, end=NOW,
                                         workspace_names={9: "gpu-box"})

    assert [(w.label, w.amount) for w in plain.per_workspace] == [
        ("workspace #9", Decimal("4.00")), ("workspace #7", Decimal("3.00"))]
    assert [w.label for w in named.per_workspace] == ["gpu-box", "workspace #7"]


def test_a_week_across_a_month_start_counts_only_the_new_month_as_month_to_date(term, student):
    spend(student, ny(2026, 9, 30, 12, 0), "2.00")
    spend(student, ny(2026, 10, 1, 12, 0), "1.00")

    report = reports.member_weekly_report(membership=student, end=ny(2026, 10, 2, 12, 0))

    assert report.week_total == Decimal("3.00")
    assert report.month_to_date == Decimal("1.00")
    assert report.month_start.isoformat() == "2026-10-01"


def test_a_past_week_stops_at_its_last_midnight_and_the_split_adds_up_exactly(term, student):
    # 23:00 Friday 11 Sep to 02:00 Saturday: a third of it is Friday's.
    spend(student, ny(2026, 9, 11, 23, 0), "1.000001", until=ny(2026, 9, 12, 2, 0))
    end = reports.report_end_resolve(course=term, week=datetime(2026, 9, 11).date(), now=NOW)

    past = reports.member_weekly_report(membership=student, end=end)
    current = reports.member_weekly_report(membership=student, end=NOW)

    assert day_amounts(past) == {"2026-09-11": Decimal("0.333334")}
    assert past.term_to_date == Decimal("0.333334")
    assert day_amounts(current) == {"2026-09-12": Decimal("0.666667")}
    assert current.term_to_date == Decimal("1.000001")


def test_the_night_clocks_go_back_gives_that_day_its_25_hours(term, student):
    # $1 an hour from 23:00 Sat 31 Oct (EDT) to midnight Mon 2 Nov (EST): 1 h + 25 h.
    spend(student, ny(2026, 10, 31, 23, 0), "26.00", until=ny(2026, 11, 2, 0, 0))

    report = reports.member_weekly_report(membership=student, end=ny(2026, 11, 2, 12, 0))

    assert day_amounts(report) == {"2026-10-31": Decimal("1.00"),
                                   "2026-11-01": Decimal("25.00")}


def test_credits_reduce_spend_and_are_listed_apart_from_workspaces(term, student):
    spend(student, ny(2026, 9, 14, 9, 0), "2.50", workspace_id=3)
    spend(student, ny(2026, 9, 14, 10, 0), "-1.00", kind=LedgerEntry.Kind.ADJUSTMENT)
    spend(student, ny(2026, 9, 14, 11, 0), "9.00", kind=LedgerEntry.Kind.HOLD, workspace_id=3)

    report = reports.member_weekly_report(membership=student, end=NOW)

    assert report.week_total == Decimal("1.50")
    assert [(w.label, w.amount) for w in report.per_workspace] == [
        ("workspace #3", Decimal("2.50")), ("Adjustments and credits", Decimal("-1.00"))]


def test_the_course_report_has_day_totals_members_sections_the_80_percent_and_big_spenders(
        term, student, other_student):
    Membership.objects.filter(pk=student.pk).update(section="A")
    Membership.objects.filter(pk=other_student.pk).update(section="B")
    quiet = MembershipFactory(course=term, section="B", user__username="quiet")
    spend(student, ny(2026, 9, 15, 23, 30), "41.00")  # $41 of $50: 82 %
    spend(other_student, ny(2026, 9, 16, 0, 30), "3.00")
    spend(other_student, ny(2026, 9, 1, 12, 0), "1.00")

    report = reports.course_weekly_report(course=term, end=NOW)

    assert day_amounts(report) == {"2026-09-15": Decimal("41.00"), "2026-09-16": Decimal("3.00")}
    assert (report.week_total, report.term_to_date) == (Decimal("44.00"), Decimal("45.00"))
    rows = {r.membership.pk: (r.week, r.term_to_date, r.cap) for r in report.rows}
    assert rows == {student.pk: (Decimal("41.00"), Decimal("41.00"), Decimal("50.00")),
                    other_student.pk: (Decimal("3.00"), Decimal("4.00"), Decimal("50.00")),
                    quiet.pk: (Decimal("0"), Decimal("0"), Decimal("50.00"))}
    assert [(s.section, s.members, s.week, s.term_to_date) for s in report.sections] == [
        ("A", 1, Decimal("41.00"), Decimal("41.00")), ("B", 2, Decimal("3.00"), Decimal("4.00"))]
    assert [r.membership.pk for r in report.over_80] == [student.pk]
    assert [r.membership.pk for r in report.biggest] == [student.pk, other_student.pk]


# --- CSV ---------------------------------------------------------------------


def test_the_member_csv_has_a_row_per_day_and_per_workspace_with_exact_amounts(
        client, week_lines, student):
    login(client, student)

    with time_machine.travel(NOW, tick=False):
        response = client.get(reverse("member-report-csv", args=[student.pk]))

    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response.content.decode().splitlines() == [
        "kind,date,workspace_id,workspace,amount_usd",
        "day,2026-09-12,,,0.000000",
        "day,2026-09-13,,,0.000000",
        "day,2026-09-14,,,0.000000",
        "day,2026-09-15,,,1.000000",
        "day,2026-09-16,,,4.000000",
        "day,2026-09-17,,,2.000000",
        "day,2026-09-18,,,0.000000",
        "workspace,,9,workspace #9,4.000000",
        "workspace,,7,workspace #7,3.000000",
    ]


def test_the_course_csv_has_days_members_and_sections_and_defuses_formulas(
        client, term, student):
    Membership.objects.filter(pk=student.pk).update(name="=HYPERLINK(1)", section="A")
    staff = MembershipFactory(course=term, role=Membership.Role.INSTRUCTOR,
                              user__username="prof", budget_cap=Decimal("0"))
    spend(student, ny(2026, 9, 14, 9, 0), "12.5")
    login(client, staff)

    with time_machine.travel(NOW, tick=False):
        lines = client.get(reverse("course-report-csv", args=[term.pk])).content.decode()

    rows = lines.splitlines()
    assert rows[0] == ("kind,date,membership_id,name,email,role,section,week_usd,"
                       "term_to_date_usd,cap_usd,share")
    assert "day,2026-09-14,,,,,,12.500000,,," in rows
    assert (f"member,,{student.pk},'=HYPERLINK(1),{student.email},student,A,12.500000,"
            "12.500000,50.00,0.2500") in rows
    assert "section,,,,,,A,12.500000,12.500000,50.00,0.2500" in rows


# --- pages and API -------------------------------------------------------------


def test_the_owner_sees_their_report_page_with_figures_and_an_svg_chart(
        client, week_lines, student):
    login(client, student)

    with time_machine.travel(NOW, tick=False):
        html = client.get(reverse("member-report", args=[student.pk])).content.decode()

    assert 'data-testid="week-total">$7.00' in html
    assert 'data-testid="month-to-date">$12.00' in html
    assert 'data-testid="projected">$56.25' in html
    assert "<svg" in html and html.count("<rect ") == 7
    assert "workspace #9" in html and "America/New_York" in html


def test_the_report_names_the_member_s_workspaces(client, term, student, prices):
    from provisioning.models import Workspace
    from provisioning.services import cloud_account_default
    from tests.factories import TemplateFactory

    workspace = Workspace.objects.create(
        owner=student, template=TemplateFactory(), name="thesis-gpu",
        cloud_account=cloud_account_default(), instance_type="t3.medium",
        compute_usd_per_hour=Decimal("0.0416"))
    spend(student, ny(2026, 9, 16, 0, 10), "2.00", workspace_id=workspace.pk)
    login(client, student)

    with time_machine.travel(NOW, tick=False):
        html = client.get(reverse("member-report", args=[student.pk])).content.decode()

    assert "thesis-gpu" in html and f"workspace #{workspace.pk}" not in html


def test_the_api_gives_the_member_report_with_decimal_strings(client, week_lines, student):
    login(client, student)

    with time_machine.travel(NOW, tick=False):
        body = client.get(f"/api/members/{student.pk}/report/").json()

    assert body["week_total"] == "7.000000" and body["term_to_date"] == "15.000000"
    assert body["burn_per_week"] == "3.75" and body["projected_term_total"] == "56.25"
    assert body["days"][3] == {"day": "2026-09-15", "amount": "1.000000"}
    assert body["workspaces"][0] == {"workspace_id": 9, "label": "workspace #9",
                                     "amount": "4.000000"}
    assert body["status"] == "ok"


def test_the_api_takes_a_past_week_and_refuses_a_malformed_one(client, week_lines, student):
    login(client, student)

    with time_machine.travel(NOW, tick=False):
        past = client.get(f"/api/members/{student.pk}/report/?week=2026-09-11")
        bad = client.get(f"/api/members/{student.pk}/report/?week=friday")

    assert past.json()["last_day"] == "2026-09-11" and past.json()["week_total"] == "5.000000"
    assert bad.status_code == 400


def test_the_course_api_lists_members_and_flags(client, term, student):
    head = MembershipFactory(course=term, role=Membership.Role.HEAD_TA, user__username="alex")
    spend(student, ny(2026, 9, 14, 9, 0), "45.00")
    login(client, head)

    with time_machine.travel(NOW, tick=False):
        body = client.get(f"/api/courses/{term.pk}/report/").json()

    assert body["week_total"] == "45.000000"
    assert body["over_80"] == [student.pk] and body["biggest"] == [student.pk]
    assert {m["membership_id"]: m["share"] for m in body["members"]}[student.pk] == "0.9000"


def test_the_reports_are_in_the_openapi_schema(client, student):
    login(client, student)

    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()

    assert "/api/members/{membership_id}/report/" in schema["paths"]
    assert "/api/courses/{course_id}/report/" in schema["paths"]
    assert "MemberReport" in schema["components"]["schemas"]


# --- who may read what -----------------------------------------------------------


def _member_urls(member):
    return [reverse("member-report", args=[member.pk]),
            reverse("member-report-csv", args=[member.pk]),
            f"/api/members/{member.pk}/report/"]


def _course_urls(course):
    return [reverse("course-report", args=[course.pk]),
            reverse("course-report-csv", args=[course.pk]),
            f"/api/courses/{course.pk}/report/"]


def test_student_b_cannot_read_a_s_report_404(client, student, other_student):
    login(client, other_student)

    assert [client.get(url).status_code for url in _member_urls(student)] == [404, 404, 404]


def test_a_ta_can_read_a_student_s_report(client, course, student):
    ta = MembershipFactory(course=course, role=Membership.Role.TA, user__username="priya")
    login(client, ta)

    assert [client.get(url).status_code for url in _member_urls(student)] == [200, 200, 200]


def test_a_student_cannot_read_the_course_report_403(client, course, student):
    login(client, student)

    assert [client.get(url).status_code for url in _course_urls(course)] == [403, 403, 403]


def test_a_ta_can_read_the_course_report(client, course):
    ta = MembershipFactory(course=course, role=Membership.Role.TA, user__username="priya")
    login(client, ta)

    assert [client.get(url).status_code for url in _course_urls(course)] == [200, 200, 200]


def test_an_outsider_gets_404_for_member_and_course_reports(client, course, student):
    elsewhere = MembershipFactory(role=Membership.Role.INSTRUCTOR, user__username="prof2")
    login(client, elsewhere)

    assert [client.get(url).status_code
            for url in _member_urls(student) + _course_urls(course)] == [404] * 6


def test_a_revoked_member_gets_404_even_for_their_own_report(client, student):
    Membership.objects.filter(pk=student.pk).update(status=Membership.Status.REVOKED)

    login(client, student)

    assert [client.get(url).status_code for url in _member_urls(student)] == [404, 404, 404]


def test_signed_out_visitors_are_sent_to_sign_in_and_the_api_answers_401(client, student):
    page, csv_file, api = (client.get(url) for url in _member_urls(student))

    assert page.status_code == csv_file.status_code == 302
    assert api.status_code == 401


# --- query counts ----------------------------------------------------------------


def _queries(client, url) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize("lines", [1, 30])
def test_the_member_report_page_query_count_does_not_grow_with_lines(client, term, student,
                                                                     lines):
    for i in range(lines):
        start = ny(2026, 9, 12, 20, 0) + timedelta(hours=5 * i)  # some cross midnight
        spend(student, start, "0.50", until=start + timedelta(hours=5), workspace_id=i % 4)
    login(client, student)

    with time_machine.travel(NOW, tick=False):
        # session, user, the member with the course, the reader's membership,
        # the window's three: summed days, lines across midnight, before; workspace names
        assert _queries(client, reverse("member-report", args=[student.pk])) == 8


@pytest.mark.parametrize("students", [5, 40])
def test_the_course_report_query_count_does_not_grow_with_students(client, term, students):
    prof = MembershipFactory(course=term, role=Membership.Role.INSTRUCTOR, user__username="prof")
    for member in MembershipFactory.create_batch(students, course=term, section="A"):
        spend(member, ny(2026, 9, 14, 23, 30), "1.00", until=ny(2026, 9, 15, 0, 30))
        spend(member, ny(2026, 9, 16, 10, 0), "2.00")
    login(client, prof)

    with time_machine.travel(NOW, tick=False):
        # session, user, the reader's membership with the course, members, the window's three
        page = _queries(client, reverse("course-report", args=[term.pk]))
        api = _queries(client, f"/api/courses/{term.pk}/report/")

    assert page == 7
    assert api == 7


# --- email -----------------------------------------------------------------------


@pytest.fixture
def classroom(term, student, other_student):
    """Emily spent, David did not; two instructors and a TA; a revoked spender."""
    spend(student, ny(2026, 9, 15, 10, 0), "4.20", workspace_id=5)
    MembershipFactory(course=term, role=Membership.Role.INSTRUCTOR, user__username="prof")
    MembershipFactory(course=term, role=Membership.Role.INSTRUCTOR, user__username="coprof")
    MembershipFactory(course=term, role=Membership.Role.TA, user__username="priya")
    gone = MembershipFactory(course=term, user__username="gone",
                             status=Membership.Status.REVOKED)
    spend(gone, ny(2026, 9, 15, 10, 0), "1.00")
    return term


def _recipients(mailoutbox):
    return sorted((m.to[0], m.subject.split(" ")[1]) for m in mailoutbox)


def test_spenders_get_their_report_and_instructors_the_course_report(classroom, mailoutbox):
    with time_machine.travel(NOW, tick=False):
        sent = weekly_reports_send_task.delay().get()

    assert sent == 3
    assert _recipients(mailoutbox) == [("coprof@uni.example.edu", "course"),
                                       ("emily@uni.example.edu", "weekly"),
                                       ("prof@uni.example.edu", "course")]
    mine = next(m for m in mailoutbox if m.to == ["emily@uni.example.edu"])
    assert mine.subject == "CS229 weekly costs 12 Sep–18 Sep: $4.20"
    assert "Term to date:          $4.20 of $50.00 (8 %)" in mine.body
    assert "workspace #5" in mine.body
    assert f"http://127.0.0.1:8000/members/{mine_pk(classroom)}/report/" in mine.body
    html, mime = mine.alternatives[0]
    assert mime == "text/html" and "$4.20" in html


def mine_pk(course):
    return Membership.objects.get(course=course, email="emily@uni.example.edu").pk


def test_running_twice_in_the_same_week_sends_once_and_next_week_sends_again(
        classroom, mailoutbox):
    with time_machine.travel(NOW, tick=False):
        weekly_reports_send_task.delay()
    with time_machine.travel(NOW + timedelta(days=1), tick=False):  # Saturday, same week
        again = weekly_reports_send_task.delay().get()

    assert again == 0 and len(mailoutbox) == 3
    assert ReportDelivery.objects.count() == 3

    with time_machine.travel(NOW + timedelta(days=7), tick=False):
        next_week = weekly_reports_send_task.delay().get()

    assert next_week == 3 and len(mailoutbox) == 6


def test_a_draft_course_and_other_courses_staff_get_nothing_from_it(classroom, mailoutbox):
    draft = CourseFactory(code="CS999", status=Course.Status.DRAFT)
    spender = MembershipFactory(course=draft, user__username="drafty")
    spend(spender, ny(2026, 9, 15, 10, 0), "1.00")
    MembershipFactory(course=draft, role=Membership.Role.INSTRUCTOR, user__username="dprof")

    with time_machine.travel(NOW, tick=False):
        weekly_reports_send_task.delay()

    addresses = {m.to[0] for m in mailoutbox}
    assert "drafty@uni.example.edu" not in addresses and "dprof@uni.example.edu" not in addresses
    assert "priya@uni.example.edu" not in addresses and "gone@uni.example.edu" not in addresses


def test_a_failed_send_is_not_recorded_and_goes_out_on_the_next_run(classroom, mailoutbox,
                                                                     monkeypatch):
    real_send = reports.EmailMultiAlternatives.send

    def flaky(message, *args, **kwargs):
        if message.to == ["prof@uni.example.edu"]:
            raise OSError("SMTP is down")
        return real_send(message, *args, **kwargs)

    monkeypatch.setattr(reports.EmailMultiAlternatives, "send", flaky)
    first = reports.weekly_reports_send(now=NOW)
    monkeypatch.setattr(reports.EmailMultiAlternatives, "send", real_send)
    second = reports.weekly_reports_send(now=NOW + timedelta(hours=1))

    assert (first.sent, first.failed) == (2, 1)
    assert (second.sent, second.skipped) == (1, 2)
    assert sorted(m.to[0] for m in mailoutbox).count("prof@uni.example.edu") == 1
