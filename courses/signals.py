"""Hooks other apps listen to, so `courses` never imports them.

These are sent explicitly by courses' services (never from `post_save`),
inside the service's transaction: a receiver's database work commits or
rolls back with the change it reacts to.
"""

from django.dispatch import Signal

# A member lost access to their course. Sent with `membership` and `actor`
# (the user who revoked, or None). Provisioning stops their running machines.
membership_revoked = Signal()
