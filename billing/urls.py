"""Billing pages (reports). Routes are added here by the reports work."""

urlpatterns: list = []
