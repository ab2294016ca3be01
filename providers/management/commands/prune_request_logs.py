from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import timezone

from providers.models import DatabaseOutage, RequestLog


class Command(BaseCommand):
    help = "Delete request logs (and their attempts) older than the retention period."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=None,
                            help=f"keep this many days (default QALBY_LOG_RETENTION_DAYS, now {settings.QALBY_LOG_RETENTION_DAYS})")
        parser.add_argument("--batch", type=int, default=5000, help="rows deleted per transaction")

    def handle(self, days, batch, **options):
        days = days if days is not None else settings.QALBY_LOG_RETENTION_DAYS
        cutoff = timezone.now() - timedelta(days=days)
        deleted = 0
        # In batches, so a large backlog does not hold one long transaction over the table.
        while True:
            ids = list(RequestLog.objects.filter(created_at__lt=cutoff).values_list("id", flat=True)[:batch])
            if not ids:
                break
            RequestLog.objects.filter(id__in=ids).delete()
            deleted += len(ids)
        outages, _ = DatabaseOutage.objects.filter(ended_at__lt=cutoff).delete()
        self.stdout.write(f"Deleted {deleted} request log(s) and {outages} database outage record(s) "
                          f"older than {days} day(s).")
