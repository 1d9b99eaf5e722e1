"""The signed-in person's SSH key page. Only ever their own key: no URL names a user."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from provisioning import keys
from provisioning.forms import KeyUploadForm

_REPLACED = ("Workspaces you launched earlier keep accepting your previous key until they are "
             "reset; new workspaces take this one.")


def _page(request, form: KeyUploadForm | None = None, *, status: int = 200) -> HttpResponse:
    key = keys.key_get(user=request.user)
    return render(request, "provisioning/ssh_keys.html", {
        "key": key, "form": form or KeyUploadForm(),
        "other_key_count": keys.workspaces_on_other_key_count(user=request.user, key=key),
        "generated_filename": keys.GENERATED_FILENAME,
    }, status=status)


@login_required
@require_GET
def ssh_keys(request):
    return _page(request)


def _replaced_notice(request, key) -> None:
    if keys.workspaces_on_other_key_count(user=request.user, key=key):
        messages.warning(request, _REPLACED)


@login_required
@require_POST
def ssh_key_upload(request):
    form = KeyUploadForm(request.POST)
    if not form.is_valid():
        return _page(request, form, status=400)
    try:
        key = keys.key_upload(user=request.user, public_key=form.cleaned_data["public_key"])
    except keys.KeyRefused as refusal:
        form.add_error(refusal.field, refusal.message)
        return _page(request, form, status=400)
    messages.success(request, f"Your SSH key is {key.fingerprint}. New workspaces accept it.")
    _replaced_notice(request, key)
    return redirect("ssh-keys")


@login_required
@require_POST
@never_cache
def ssh_key_generate(request):
    """Answer with the private key as a download. It is not kept anywhere."""
    try:
        key, private_key = keys.key_generate(user=request.user)
    except keys.KeyRefused as refusal:  # a fresh key colliding with someone's: only in theory
        messages.error(request, refusal.message)
        return redirect("ssh-keys")
    messages.success(request, f"Lens made a new key, {key.fingerprint}. Your browser downloaded "
                              f"its private half as {keys.GENERATED_FILENAME}; Lens kept no copy.")
    _replaced_notice(request, key)
    response = HttpResponse(private_key, content_type="application/octet-stream")
    response["Content-Disposition"] = f'attachment; filename="{keys.GENERATED_FILENAME}"'
    return response


@login_required
@require_POST
def ssh_key_delete(request):
    if keys.key_delete(user=request.user):
        messages.success(request, "Your SSH key is removed. New workspaces will have no key; "
                                  "Jupyter still works.")
    return redirect("ssh-keys")
