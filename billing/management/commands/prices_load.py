from django.core.management.base import BaseCommand

from billing.services import prices_load_bundled


class Command(BaseCommand):
    help = "Load the bundled snapshot of AWS on-demand prices into the catalog."

    def handle(self, *args, **options):
        count = prices_load_bundled()
        self.stdout.write(f"Loaded {count} prices.")
