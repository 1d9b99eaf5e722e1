from django.apps import AppConfig


class LensConfig(AppConfig):
    name = "lens"
    verbose_name = "Lens"

    def ready(self) -> None:
        from courses.approvals import budget_cap_shift_register
        from lens.budgets import member_cap_shift

        # courses imports neither billing nor provisioning: approved budget
        # requests move caps through the same service staff use.
        budget_cap_shift_register(member_cap_shift)
