"""Anonymised aggregates: all accounts' usage folded per day, provider and model, with no user link."""

from datetime import timedelta

from django.db import transaction
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import TruncDate

from .models import AnonymousAggregate, UsageRecord, failed_calls


def fold_days(*, now, days: int) -> int:
    """Recompute the aggregates of every day that still has raw records. Idempotent: each day is replaced whole.

    Today is left for tomorrow's run, so a day is folded once it is complete and again while
    its raw records live (late records are folded in).
    """
    start = (now - timedelta(days=days)).date()
    end = now.date()
    rows = (
        UsageRecord.objects.filter(
            created__date__gte=start, created__date__lt=end, user__restricted_at__isnull=True, user__objected_at__isnull=True
        )
        .annotate(day=TruncDate("created"))
        .values("day", "provider", "model_used")
        .annotate(
            requests=Count("id"),
            errors=Count("id", filter=failed_calls()),
            prompt_tokens=Sum("prompt_tokens"),
            cached_tokens=Sum("cached_tokens"),
            completion_tokens=Sum("completion_tokens"),
            tokens_saved=Sum(F("tokens_original") - F("tokens_sent")),
            cache_hits=Count("id", filter=Q(cache_status="hit")),
            latency_ms_total=Sum("latency_ms"),
        )
    )
    aggregates = [
        AnonymousAggregate(
            day=row["day"],
            provider=row["provider"],
            model=row["model_used"],
            **{
                k: row[k] or 0
                for k in (
                    "requests",
                    "errors",
                    "prompt_tokens",
                    "cached_tokens",
                    "completion_tokens",
                    "tokens_saved",
                    "cache_hits",
                    "latency_ms_total",
                )
            },
        )
        for row in rows
    ]
    with transaction.atomic():
        # Lock the window's rows so two runs at once replace, never duplicate.
        list(AnonymousAggregate.objects.select_for_update().filter(day__gte=start, day__lt=end).values_list("pk", flat=True))
        AnonymousAggregate.objects.filter(day__gte=start, day__lt=end).delete()
        AnonymousAggregate.objects.bulk_create(aggregates, ignore_conflicts=True)
    return len(aggregates)


def purge_aggregates(*, older_than) -> int:
    deleted, _ = AnonymousAggregate.objects.filter(day__lt=older_than.date()).delete()
    return deleted
