"""How the gateway hands usage to metrics: one record per upstream call, written once."""

from .models import UsageRecord


def usage_record(**fields) -> UsageRecord:
    return UsageRecord.objects.create(**fields)
