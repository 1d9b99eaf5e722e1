"""The Celery app: tasks autodiscovered from the apps, beat schedule in the database."""

import os

from celery import Celery
from celery.schedules import crontab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lens.settings")

app = Celery("lens")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Beat's periodic work. django-celery-beat copies these into its tables at
# start, so they can also be paused or re-timed from the admin.
app.conf.beat_schedule = {
    # Fridays 16:00 UTC: members, advisors and instructors get the week's costs.
    "weekly-reports": {
        "task": "billing.tasks.weekly_reports_send_task",
        "schedule": crontab(day_of_week="fri", hour=16, minute=0),
    },
    "billing-sweep": {
        "task": "provisioning.tasks.billing_sweep_task",
        "schedule": 60.0,
    },
    # Workshops whose extension has ended: participants revoked, workspaces stopped.
    "workshops-end": {
        "task": "courses.tasks.workshops_end_task",
        "schedule": 60.0,
    },
    # Approvals past their expiry: marked expired, budget grants taken back.
    "approvals-expire": {
        "task": "courses.tasks.approvals_expire_task",
        "schedule": 60.0,
    },
    # Idle auto-stop: warn, then stop machines quiet for their policy's window.
    "idle-sweep": {
        "task": "provisioning.tasks.idle_sweep_task",
        "schedule": 60.0,
    },
    # AWS is the source of truth: console stops, terminations, orphans folded in.
    "reconcile": {
        "task": "provisioning.tasks.reconcile_task",
        "schedule": 60.0,
    },
    "workspaces-settle-sweep": {
        "task": "provisioning.tasks.workspaces_settle_sweep",
        "schedule": 60.0,
    },
    # Capacity pools (GPU slots) with people in line: admit anyone a slot is free for.
    "slots-admit-sweep": {
        "task": "provisioning.tasks.slots_admit_sweep",
        "schedule": 60.0,
    },
    # Resets and deletions are step by step; this resumes any whose worker died.
    "workspaces-lifecycle-resume": {
        "task": "provisioning.tasks.lifecycle_resume_task",
        "schedule": 120.0,
    },
    # Reset and deletion backups are kept LENS_BACKUP_RETENTION_DAYS, then deleted.
    "backups-expire": {
        "task": "provisioning.tasks.backups_expire_task",
        "schedule": crontab(minute=17),
    },
}
