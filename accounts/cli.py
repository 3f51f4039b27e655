import json
import logging

from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from billing.plans import plan_for
from metrics.selectors import month_totals

from . import services
from .models import User


def _user_create_args(parser):
    parser.add_argument("--email", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--name", default="")


def _user_create(options, out):
    email = User.objects.normalize_email(options["email"])
    try:
        User._meta.get_field("email").run_validators(email)
    except ValidationError:
        raise CommandError(f"not an email address: {email}") from None
    if User.objects.filter(email=email).exists():
        raise CommandError(f"a user with email {email} already exists")
    name = options["name"] or email.split("@")[0]
    try:
        password_validation.validate_password(options["password"], User(email=email, display_name=name))
    except ValidationError as error:
        raise CommandError("password rejected: " + " ".join(error.messages)) from None
    user = services.user_create(email=email, password=options["password"], display_name=name, verified=True)
    out.write(f"created user {user.pk} {user.email}")


def _user_show_args(parser):
    parser.add_argument("--email", required=True)


def user_summary(user: User) -> dict:
    """What ``aura user-show`` prints: facts about the account, never a secret."""
    plan = plan_for(user)
    subscription = getattr(user, "subscription", None) if hasattr(user, "subscription") else None
    month = month_totals(user.pk)
    return {
        "id": user.pk,
        "email": user.email,
        "display_name": user.display_name,
        "email_verified": user.email_verified,
        "status": "active" if user.is_active else "inactive",
        "plan": plan.code,
        "subscription_status": subscription.status if subscription else None,
        "quota": {
            "monthly_requests": plan.monthly_requests,
            "used": month["client_requests"],
            "requests_per_minute": plan.requests_per_minute,
        },
        "language": user.language,
        "created": user.created.isoformat(),
        "last_login": user.last_login.isoformat() if user.last_login else None,
        "this_month": month,
    }


def _user_show(options, out):
    email = User.objects.normalize_email(options["email"])
    user = User.objects.filter(email=email).first()
    if user is None:
        raise CommandError(f"no user with email {email}")
    out.write(json.dumps(user_summary(user), sort_keys=True))


def _run_job_args(parser):
    from .retention import JOBS

    parser.add_argument("job", choices=sorted(JOBS))


def _run_job(options, out):
    from .retention import run

    more = True
    while more:
        audit, more = run(options["job"])
        out.write(f"{audit.job}: removed {json.dumps(audit.removed, sort_keys=True)}")


def _beat_embedded_args(parser):
    parser.add_argument("--once", action="store_true", help="run every job once, in the schedule's order, and stop")


def _beat_embedded(options, out):
    from django.conf import settings

    from aura import schedule
    from aura.celery import app

    if not app.conf.task_always_eager:
        raise CommandError("a Celery broker is configured: run `aura jobs` (one machine), or `celery -A aura beat` and a worker instead")
    app.loader.import_default_modules()  # the apps' tasks, as a worker registers them
    logging.getLogger("celery.app.trace").setLevel(logging.WARNING)  # a line per run would drown the console
    entries = settings.CELERY_BEAT_SCHEDULE
    if options["once"]:
        failed = []
        for job in schedule.jobs(entries, 0):
            outcome = schedule.run_task(job)
            out.write(f"{job.name}: {outcome}")
            if outcome != "ok":
                failed.append(job.name)
        if failed:
            raise CommandError(f"failed: {', '.join(failed)}")
        return
    out.write(f"running {len(entries)} scheduled jobs in this process (no broker): {', '.join(entries)}")
    out.flush()  # now, also when the output is a file: the process ends on a signal, unflushed
    try:
        schedule.run(entries, schedule.run_task)
    except KeyboardInterrupt:
        pass


# The queues the Procfile's worker serves (CELERY_TASK_ROUTES sends every task to one of them).
WORKER_QUEUES = "default,billing,metrics"


def _jobs(options, out):
    """Beat's jobs for one machine (``make run``): in this process without a broker, else a Celery
    worker with beat embedded, so that what the web process queues (emails, exports) runs too."""
    import os
    import sys

    from django.conf import settings

    from aura.celery import app

    if app.conf.task_always_eager:
        _beat_embedded({"once": False}, out)
        return
    settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
    out.write("a Celery broker is configured: starting a Celery worker with beat embedded (one process)")
    out.flush()  # before exec replaces this process
    command = [sys.executable, "-m", "celery", "-A", "aura", "worker", "--beat", "--queues", WORKER_QUEUES]
    command += ["--concurrency", "1", "--loglevel", "INFO", "--schedule", str(settings.DATA_DIR / "celerybeat-schedule")]
    os.execv(sys.executable, command)  # noqa: S606 -- our own interpreter, fixed arguments


COMMANDS = {
    "jobs": (
        "Run Celery beat's jobs for one machine: in this process without a broker, else a worker with beat.",
        lambda parser: None,
        _jobs,
    ),
    "beat-embedded": (
        "Run Celery beat's jobs in this process, for the embedded defaults (no broker).",
        _beat_embedded_args,
        _beat_embedded,
    ),
    "run-job": ("Run a retention job to completion now (also scheduled by Celery beat).", _run_job_args, _run_job),
    "user-create": ("Create a verified user.", _user_create_args, _user_create),
    "user-show": ("Print one JSON object about a user.", _user_show_args, _user_show),
}
