"""Money and shares in templates as the dashboard writes them (``charts.fmt``): a sub-cent spend keeps
four decimals ($0.0013), where ``floatformat:2`` made it $0.00."""

from django import template

from metrics import charts

register = template.Library()


@register.filter
def usd(value, places=None) -> str:
    """``spend|usd`` as the dashboard writes it; ``budget|usd:2`` in cents (a budget is set in cents)."""
    return charts.fmt(None if value in (None, "") else float(value), "usd", None if places is None else int(places))


@register.filter
def share_of(part, whole) -> str:
    """``part`` as a percentage of ``whole``: 13.0%."""
    try:
        return charts.fmt(float(part) / float(whole), "percent")
    except (TypeError, ValueError, ZeroDivisionError):
        return "—"
