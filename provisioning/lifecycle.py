"""The rest of a workspace's life: its home volume, hibernate, delete, reset, spot.

Every state change goes through `services.workspace_transition`. The AWS
work runs in Celery tasks and is written so that a task which runs twice, or
dies half way, does each piece once: every step asks AWS (by id or by Lens
tags) whether it already happened before it acts.

Decisions, so the pages and the docs can say them plainly:

- The home volume is a volume of its own (CreateVolume, gp3, encrypted),
  made next to the first machine and attached as /dev/sdf once the machine
  runs; the bootstrap formats it only when blank and mounts it at /home. It
  survives stop/start, hibernation, a reset and a spot interruption.
- Deleting a workspace terminates the machine, snapshots the home volume
  (kept LENS_BACKUP_RETENTION_DAYS, so staff can bring back an accidental
  delete) and then deletes the volume. Billing for the volume ends with it.
- A reset snapshots the machine's root disk (kept N days), terminates the
  machine, launches a fresh one from the template in the home volume's
  availability zone and reattaches the home. The workspace is `resetting`
  while the backup and replacement run (no compute billed; its disks stay
  billed, as they exist), then `pending` → `running` as for any start.
- Spot machines run from a persistent request that *stops* on interruption,
  so the root disk survives too. If AWS terminates one anyway, the workspace
  stops without a machine and its next Start launches a fresh one.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from billing.guard import BudgetRefused, budget_authorize
from provisioning import agent, aws, keys, network, services
from provisioning.broadcast import broadcast_member_workspaces
from provisioning.models import Workspace, WorkspaceBackup, WorkspaceReset
from provisioning.states import State

log = logging.getLogger(__name__)

HOME_DEVICE = "/dev/sdf"
_GONE = {"shutting-down", "terminated"}
Step = WorkspaceReset.Step


class ResetRefused(services.TransitionError):
    """The reset may not start now (wrong state, a reset already running, no money)."""


def _fresh(workspace_id: int) -> Workspace | None:
    return (Workspace.objects.select_related("cloud_account", "template", "owner__course")
            .filter(pk=workspace_id).first())


def _actor_name(actor) -> str:
    return getattr(actor, "email", "") or getattr(actor, "username", "") or "Lens"


def workspace_tags(workspace: Workspace) -> dict[str, str]:
    return {aws.TAG_WORKSPACE: str(workspace.pk), aws.TAG_COURSE: str(workspace.owner.course_id),
            aws.TAG_MEMBER: str(workspace.owner_id)}


def _backup_until(now: datetime) -> datetime:
    return now + timedelta(days=settings.LENS_BACKUP_RETENTION_DAYS)


def _backup_tags(workspace: Workspace, until: datetime, **extra: str) -> dict[str, str]:
    return {**workspace_tags(workspace), aws.TAG_ROLE: "backup",
            aws.TAG_DELETE_AFTER: until.date().isoformat(), **extra}


# --- launching a machine, and its home volume -------------------------------


def _home_volume(workspace: Workspace) -> aws.Volume | None:
    """The workspace's home volume: by the id Lens kept, else by its tags."""
    account = workspace.cloud_account
    if workspace.home_volume_id:
        try:
            volume = aws.volume_get(account, workspace.home_volume_id)
        except aws.ResourceNotFound:
            volume = None
        if volume is not None and volume.state not in {"deleting", "deleted"}:
            return volume
    return aws.volume_find(account, tags={aws.TAG_WORKSPACE: str(workspace.pk),
                                          aws.TAG_ROLE: "home"})


# First-boot script when a workspace has a home volume: wait for it (attached as /dev/sdf
# once the machine runs; AL2023 links it there on Nitro too), format it only when it has
# no file system (a new volume; a reset or a spot replacement finds the old one), seed it
# with the image's /home, mount it at /home, and keep it in fstab for every later boot.
# The template's own bootstrap runs afterwards, with /home in place.
HOME_MOUNT_SCRIPT = """#!/bin/bash
set -u
dev=""
for _ in $(seq 1 180); do
  for d in /dev/sdf /dev/xvdf; do [ -b "$d" ] && dev=$(readlink -f "$d") && break 2; done
  sleep 2
done
if [ -n "$dev" ]; then
  if ! blkid "$dev" >/dev/null 2>&1; then
    mkfs.ext4 -q -L lens-home "$dev"
    mkdir -p /mnt/lens-home && mount "$dev" /mnt/lens-home
    cp -a /home/. /mnt/lens-home/ && umount /mnt/lens-home
  fi
  grep -q 'LABEL=lens-home' /etc/fstab || \
    echo 'LABEL=lens-home /home ext4 defaults,nofail 0 2' >> /etc/fstab
  mount /home
else
  echo "lens: the home volume did not appear; /home is on the machine's own disk" >&2
fi
"""


def user_data_for(*, workspace: Workspace) -> str:
    """The first-boot user data: mount the home volume, then the template's bootstrap."""
    bootstrap = workspace.template.bootstrap
    if not workspace.home_volume_gib:
        return bootstrap
    if not bootstrap.strip():
        return HOME_MOUNT_SCRIPT
    return (HOME_MOUNT_SCRIPT + "mkdir -p /var/lib/lens\n"
            "cat > /var/lib/lens/bootstrap <<'LENS_BOOTSTRAP_END'\n" + bootstrap.rstrip("\n")
            + "\nLENS_BOOTSTRAP_END\nchmod +x /var/lib/lens/bootstrap\n"
              "/var/lib/lens/bootstrap\n")


def instance_run_for(*, workspace: Workspace) -> aws.Instance:
    """RunInstances for this workspace, next to its home volume if it has one.

    Callers look for an instance already tagged with the workspace first; the
    workspace's client token makes AWS answer a retried call with the same
    machine.
    """
    template = workspace.template
    # The account's network (made on first use) and the owner's own key, if any.
    account = network.account_network_ensure(account=workspace.cloud_account,
                                              ports=template.port_list)
    # A fresh agent token for the machine about to exist; only its hash is kept.
    token = agent.agent_token_issue(workspace=workspace)
    zone = ""
    if workspace.home_volume_id:
        volume = _home_volume(workspace)
        zone = volume.availability_zone if volume else ""
    try:
        instance = _run(workspace, account=account, token=token, zone=zone)
    except aws.NetworkNotFound:
        # A network Lens made is gone from AWS (deleted by hand, or a fresh fake AWS):
        # make it again. A network an administrator configured is theirs to fix.
        if not network.account_network_forget(account=account):
            raise
        account = network.account_network_ensure(account=account, ports=template.port_list)
        instance = _run(workspace, account=account, token=token, zone=zone)
    log.info("workspace %s: ran %s", workspace.pk, instance.id)
    return instance


def _run(workspace: Workspace, *, account, token: str, zone: str) -> aws.Instance:
    template = workspace.template
    return aws.instance_run(
        account,
        client_token=str(workspace.client_token),
        image_id=aws.image_resolve(account, template.image),
        instance_type=workspace.instance_type,
        user_data=agent.user_data_build(bootstrap=user_data_for(workspace=workspace),
                                        workspace_id=workspace.pk, token=token),
        root_volume_gib=template.root_volume_gib,
        key_name=keys.launch_key_name(account=account, workspace=workspace),
        availability_zone=zone,
        hibernation=template.hibernation,
        spot=workspace.market == "spot",
        tags={"Name": f"lens-{workspace.pk}-{workspace.name}"[:255], **workspace_tags(workspace)},
    )


def home_volume_ready(*, workspace: Workspace, instance: aws.Instance) -> bool:
    """Make sure the home volume exists next to `instance` and is attached to it.

    True once attached; False while AWS is still creating, detaching or
    attaching it (the caller asks again on its next poll). Creates the volume
    only when neither the kept id nor the tags find one.
    """
    if not workspace.home_volume_gib:
        return True
    account = workspace.cloud_account
    volume = _home_volume(workspace)
    if volume is None:
        volume = aws.volume_create(
            account, availability_zone=instance.availability_zone,
            size_gib=workspace.home_volume_gib,
            tags={"Name": f"lens-{workspace.pk}-{workspace.name}-home"[:255],
                  **workspace_tags(workspace), aws.TAG_ROLE: "home"})
        log.info("workspace %s: created home volume %s", workspace.pk, volume.id)
    if volume.id != workspace.home_volume_id:
        Workspace.objects.filter(pk=workspace.pk).update(home_volume_id=volume.id)
        workspace.home_volume_id = volume.id
    if volume.attached_to == instance.id:
        return volume.attachment_state == "attached"
    if instance.availability_zone and volume.availability_zone != instance.availability_zone:
        raise aws.AwsError(f"The home volume {volume.id} is in {volume.availability_zone} but "
                           f"the machine came up in {instance.availability_zone}; a volume "
                           "attaches only within its zone.")
    if volume.state != "available":
        return False  # still being created, or still detaching from the old machine
    aws.volume_attach(account, volume_id=volume.id, instance_id=instance.id, device=HOME_DEVICE)
    return aws.volume_get(account, volume.id).attachment_state == "attached"


# --- hibernate --------------------------------------------------------------


def workspace_hibernate(*, workspace: Workspace, actor) -> Workspace:
    """Ask to hibernate a running workspace (memory kept on disk; resumes where it was)."""
    from provisioning import tasks

    if not workspace.template.hibernation:
        raise services.TransitionNotAllowed(
            f"{workspace.template.name} does not allow hibernation; use Stop.")
    if workspace.state != State.RUNNING:
        raise services.TransitionNotAllowed(
            f"Only a running workspace can hibernate; {workspace.name} is "
            f"{workspace.get_state_display().lower()}.")
    with transaction.atomic():
        services.workspace_transition(workspace=workspace, to=State.HIBERNATING, actor=actor,
                                      reason="hibernate requested",
                                      stop_reason=Workspace.StopReason.USER)
        transaction.on_commit(lambda: tasks.workspace_hibernate_task.delay(workspace.pk))
    return workspace


def workspace_hibernate_instance(*, workspace_id: int) -> Workspace | None:
    """StopInstances with Hibernate; when AWS refuses, a plain stop that says why."""
    workspace = _fresh(workspace_id)
    if workspace is None:
        return None
    if workspace.state == State.STOPPING:  # a fallback whose stop call did not go through
        return services.workspace_stop_instance(workspace_id=workspace_id)
    if workspace.state != State.HIBERNATING:
        return workspace
    try:
        aws.instances_stop(workspace.cloud_account, [workspace.instance_id], hibernate=True)
    except aws.HibernationRefused as refusal:
        services.workspace_transition(
            workspace=workspace, to=State.STOPPING,
            reason=f"AWS refused to hibernate, stopping instead ({refusal})")
        return services.workspace_stop_instance(workspace_id=workspace_id)
    return services.workspace_sync(workspace=workspace)


# --- delete -----------------------------------------------------------------


def workspace_terminate(*, workspace: Workspace, actor) -> Workspace:
    """Delete a workspace for good: its machine is terminated and its home volume is
    backed up (kept N days) and deleted."""
    from provisioning import tasks

    if not workspace.can_delete:
        raise services.TransitionNotAllowed(f"{workspace.name} is already deleted.")
    with transaction.atomic():
        services.workspace_transition(workspace=workspace, to=State.TERMINATING, actor=actor,
                                      reason=f"deleted by {_actor_name(actor)}", reset_step="")
        WorkspaceReset.objects.filter(workspace=workspace).exclude(
            step__in=[Step.DONE, Step.FAILED]).update(
            step=Step.FAILED, error="The workspace was deleted.", finished_at=timezone.now())
        transaction.on_commit(lambda: tasks.workspace_terminate_task.delay(workspace.pk))
    return workspace


def workspace_terminate_advance(*, workspace_id: int) -> bool:
    """Terminate the machine, back up and delete the home volume, then `terminated`.

    Returns False while AWS is still busy (the task asks again).
    """
    workspace = _fresh(workspace_id)
    if workspace is None or workspace.state != State.TERMINATING:
        return True
    account = workspace.cloud_account
    if workspace.instance_id and not _instance_terminated(account, workspace.instance_id):
        return False
    volume = _home_volume(workspace) if workspace.home_volume_gib else None
    if volume is not None:
        if volume.state == "in-use":
            return False  # AWS detaches it as the machine goes
        snapshot = _home_backup(workspace, volume)
        if snapshot.state == "pending":
            return False
        if snapshot.state != "completed":
            raise aws.AwsError(f"The backup of home volume {volume.id} failed "
                               f"({snapshot.id}); the volume is kept.")
        aws.volume_delete(account, volume.id)
    with contextlib.suppress(services.StaleState):  # someone else finished it
        services.workspace_transition(workspace=workspace, to=State.TERMINATED,
                                      reason="machine terminated, home volume deleted"
                                      if volume else "machine terminated",
                                      public_ip=None, public_dns="")
    return True


def _instance_terminated(account, instance_id: str) -> bool:
    """Terminate the instance unless it already is; True once AWS reports it gone."""
    try:
        instance = aws.instance_get(account, instance_id)
    except aws.InstanceNotFound:
        return True
    if instance.state == "terminated":
        return True
    if instance.state != "shutting-down":
        aws.instances_terminate(account, [instance_id])
    try:
        return aws.instance_get(account, instance_id).state == "terminated"
    except aws.InstanceNotFound:
        return True


def _home_backup(workspace: Workspace, volume: aws.Volume) -> aws.Snapshot:
    account = workspace.cloud_account
    backup = WorkspaceBackup.objects.filter(workspace=workspace, volume_id=volume.id,
                                            kind=WorkspaceBackup.Kind.HOME_AT_DELETE).first()
    if backup is not None:
        return aws.snapshot_get(account, backup.snapshot_id)
    until = _backup_until(timezone.now())
    tags = {aws.TAG_WORKSPACE: str(workspace.pk), aws.TAG_ROLE: "backup",
            "lens:backup-of": volume.id}
    snapshot = aws.snapshot_find(account, tags=tags) or aws.snapshot_create(
        account, volume_id=volume.id,
        description=f"Lens: home of workspace {workspace.pk} ({workspace.name}) at deletion",
        tags={**_backup_tags(workspace, until), "lens:backup-of": volume.id})
    WorkspaceBackup.objects.get_or_create(
        snapshot_id=snapshot.id,
        defaults={"workspace": workspace, "kind": WorkspaceBackup.Kind.HOME_AT_DELETE,
                  "volume_id": volume.id, "delete_after": until})
    return snapshot


# --- reset ------------------------------------------------------------------


def workspace_reset(*, workspace: Workspace, actor) -> WorkspaceReset:
    """Start a reset: back up the machine, replace it from the template, keep the home.

    The caller has checked Action.RESET_WORKSPACE. The fresh machine comes up
    running, so the budget guard decides as for a start.
    """
    from provisioning import tasks

    if workspace.state not in {State.RUNNING, State.STOPPED, State.FAILED}:
        raise ResetRefused(f"{workspace.name} is {workspace.get_state_display().lower()}; "
                           "a reset can start once it is running, stopped or failed.")
    if workspace.reset_step or workspace.resets.exclude(
            step__in=[Step.DONE, Step.FAILED]).exists():
        raise ResetRefused(f"{workspace.name} is already being reset.")
    with transaction.atomic():
        now = timezone.now()
        disks = services._member_metered(membership=workspace.owner, now=now)
        old_instance = workspace.instance_id
        services.workspace_transition(
            workspace=workspace, to=State.RESETTING, actor=actor,
            reason=f"reset by {_actor_name(actor)}", reset_step=Step.BACKUP,
            client_token=uuid.uuid4(),  # the fresh machine's RunInstances must not match the old
            stop_reason="", failure_reason="", public_ip=None, public_dns="")
        try:
            authorization = budget_authorize(
                membership=workspace.owner, workspace_id=workspace.pk,
                usd_per_hour=workspace.compute_usd_per_hour,
                what=f"{workspace.name} ({workspace.instance_type})", at=now, actor=actor,
                storage_usd_per_hour=disks)
        except BudgetRefused as refusal:
            raise ResetRefused(refusal.message) from refusal
        workspace.launch_warning = authorization.warning
        reset = WorkspaceReset.objects.create(workspace=workspace, actor=actor,
                                              old_instance_id=old_instance)
        transaction.on_commit(lambda: tasks.workspace_reset_task.delay(reset.pk))
    return reset


def _step(reset: WorkspaceReset, step: str, **workspace_fields) -> None:
    """Record progress on the reset and the card, and tell the card's watchers."""
    now = timezone.now()
    with transaction.atomic():
        reset.step = step
        reset.finished_at = now if step in {Step.DONE, Step.FAILED} else None
        reset.save(update_fields=["step", "finished_at", "new_instance_id", "error"])
        shown = "" if step in {Step.DONE, Step.FAILED} else step
        Workspace.objects.filter(pk=reset.workspace_id).update(reset_step=shown,
                                                               **workspace_fields)
        owner_id = reset.workspace.owner_id
        transaction.on_commit(lambda: broadcast_member_workspaces(membership_id=owner_id))


def workspace_reset_fail(*, reset_id: int, reason: str) -> None:
    """The reset gave up: the card says why; a new reset can be asked for."""
    reset = WorkspaceReset.objects.select_related("workspace").get(pk=reset_id)
    if reset.step in {Step.DONE, Step.FAILED}:
        return
    reset.error = reason
    _step(reset, Step.FAILED)
    services.workspace_fail(workspace_id=reset.workspace_id, reason=f"Reset failed: {reason}")


def workspace_reset_advance(*, reset_id: int) -> bool:
    """Do as much of the reset as AWS allows now; True when nothing is left to wait for.

    Each step checks AWS before acting, so a retried or duplicated task
    finds the snapshot, the terminated machine or the new machine it made.
    """
    reset = WorkspaceReset.objects.select_related("workspace").filter(pk=reset_id).first()
    if reset is None or reset.step in {Step.DONE, Step.FAILED}:
        return True
    workspace = _fresh(reset.workspace_id)
    expected = State.RESETTING if reset.step in {Step.BACKUP, Step.REPLACE} else None
    if workspace is None or (expected and workspace.state != expected) or (
            reset.step == Step.ATTACH and workspace.state not in {State.PENDING,
                                                                  State.RUNNING}):
        reset.error = "The workspace changed while it was being reset."
        _step(reset, Step.FAILED)
        return True
    account = workspace.cloud_account

    if reset.step == Step.BACKUP:
        snapshot = _reset_backup(reset, workspace)
        if snapshot is not None and snapshot.state == "pending":
            return False
        if snapshot is not None and snapshot.state != "completed":
            raise aws.AwsError(f"The backup snapshot {snapshot.id} failed; nothing was replaced.")
        _step(reset, Step.REPLACE)

    if reset.step == Step.REPLACE:
        if reset.old_instance_id and not _instance_terminated(account, reset.old_instance_id):
            return False
        instance = aws.instance_find_for_workspace(account, workspace_id=workspace.pk)
        if instance is not None and instance.id == reset.old_instance_id:
            return False  # AWS still lists the old machine as live
        if instance is None:
            instance = instance_run_for(workspace=workspace)
        with transaction.atomic():
            services.workspace_transition(workspace=workspace, to=State.PENDING,
                                          reason="reset: fresh machine requested",
                                          instance_id=instance.id)
            reset.new_instance_id = instance.id
            _step(reset, Step.ATTACH)

    if reset.step == Step.ATTACH:
        if workspace.state == State.PENDING:
            workspace = services.workspace_sync(workspace=workspace)  # attaches the home
        if workspace.state == State.RUNNING:
            _step(reset, Step.DONE)
            return True
        if workspace.state != State.PENDING:
            reset.error = workspace.failure_reason or "The new machine did not come up."
            _step(reset, Step.FAILED)
            return True
        return False
    return True


def _reset_backup(reset: WorkspaceReset, workspace: Workspace) -> aws.Snapshot | None:
    """The snapshot of the old root disk: the one recorded, one tagged with this reset,
    or a new one. None when there is no old machine to back up."""
    account = workspace.cloud_account
    backup = WorkspaceBackup.objects.filter(reset=reset).first()
    if backup is not None:
        return aws.snapshot_get(account, backup.snapshot_id)
    if not reset.old_instance_id:
        return None
    until = _backup_until(reset.started_at)
    snapshot = aws.snapshot_find(account, tags={aws.TAG_RESET: str(reset.pk)})
    if snapshot is None:
        try:
            old = aws.instance_get(account, reset.old_instance_id)
        except aws.InstanceNotFound:
            return None
        if old.state in _GONE or not old.root_volume_id:
            return None
        snapshot = aws.snapshot_create(
            account, volume_id=old.root_volume_id,
            description=f"Lens: workspace {workspace.pk} ({workspace.name}) before reset "
                        f"{reset.pk}",
            tags=_backup_tags(workspace, until, **{aws.TAG_RESET: str(reset.pk)}))
    WorkspaceBackup.objects.get_or_create(
        snapshot_id=snapshot.id,
        defaults={"workspace": workspace, "reset": reset, "volume_id": snapshot.volume_id,
                  "kind": WorkspaceBackup.Kind.ROOT_BEFORE_RESET, "delete_after": until})
    return snapshot


# --- spot -------------------------------------------------------------------


def is_spot_interruption(instance: aws.Instance) -> bool:
    """EC2's state reason for a reclaimed spot machine (Server.SpotInstanceShutdown /
    …Termination, "Spot instance termination")."""
    return "spot" in instance.state_reason.lower()


def workspace_interrupted(*, workspace_id: int, reason: str,
                          instance_state: str = "stopped") -> Workspace | None:
    """AWS reclaimed a spot machine: fold it to `stopped` (reason spot) and tell the student.

    The reconciler calls this when EC2 reports a spot interruption. The home
    volume is left alone. If AWS terminated the machine instead of stopping
    it, the workspace forgets it, and its next Start launches a fresh one.
    """
    workspace = _fresh(workspace_id)
    if workspace is None or workspace.state not in {State.PENDING, State.RUNNING,
                                                    State.STOPPING, State.HIBERNATING}:
        return workspace
    fields: dict = {"stop_reason": Workspace.StopReason.SPOT, "public_ip": None,
                    "public_dns": ""}
    if instance_state in _GONE:
        fields.update(instance_id="", client_token=uuid.uuid4())
    text = f"spot interruption: {reason}" if reason else "spot interruption"
    try:
        with transaction.atomic():
            if workspace.state != State.STOPPING:
                services.workspace_transition(workspace=workspace, to=State.STOPPING,
                                              reason=text, stop_reason=Workspace.StopReason.SPOT)
            services.workspace_transition(workspace=workspace, to=State.STOPPED, reason=text,
                                          **fields)
            transaction.on_commit(lambda: interruption_notify(workspace))
    except services.StaleState:
        return _fresh(workspace_id)
    return workspace


def interruption_notify(workspace: Workspace) -> None:
    """Email the owner that AWS took their spot machine back (their /home is safe)."""
    owner = workspace.owner
    if not owner.email:
        return
    try:
        send_mail(
            subject=f"[{owner.course.code}] AWS reclaimed your spot workspace {workspace.name}",
            message=(
                f"AWS needed the spot capacity back, so your workspace {workspace.name} in "
                f"{owner.course.code} was stopped.\n\n"
                "Your files in /home are safe on the workspace's own home volume. Start the "
                "workspace again from Lens when you are ready; if spot capacity stays short, "
                "launch an on-demand workspace instead.\n"),
            from_email=None, recipient_list=[owner.email])
    except Exception:  # a lost email must not undo the fold
        log.exception("interruption email for workspace %s failed", workspace.pk)


# --- backups ----------------------------------------------------------------


def backups_expire(*, now: datetime) -> int:
    """Delete the snapshots whose keeping time is over; returns how many."""
    deleted = 0
    due = (WorkspaceBackup.objects.filter(deleted_at=None, delete_after__lte=now)
           .select_related("workspace__cloud_account"))
    for backup in due:
        aws.snapshot_delete(backup.workspace.cloud_account, backup.snapshot_id)
        WorkspaceBackup.objects.filter(pk=backup.pk).update(deleted_at=now)
        deleted += 1
    return deleted


def lifecycle_stalled(*, now: datetime) -> tuple[list[int], list[int]]:
    """Resets and deletions that have not moved for a while (a worker died): to resume."""
    quiet = now - timedelta(minutes=2)
    resets = list(WorkspaceReset.objects.exclude(step__in=[Step.DONE, Step.FAILED])
                  .filter(workspace__state_changed_at__lt=quiet).values_list("pk", flat=True))
    deleting = list(Workspace.objects.filter(state=State.TERMINATING, state_changed_at__lt=quiet)
                    .values_list("pk", flat=True))
    return resets, deleting
