from celery import shared_task

from aura.celery import next_batch

from .models import DataExport


@shared_task(name="accounts.build_export_task", acks_late=True, soft_time_limit=600, time_limit=660)
def build_export_task(export_id: str) -> None:
    from .privacy import export_build

    export = DataExport.objects.filter(pk=export_id).select_related("user").first()
    if export is not None:
        export_build(export=export)


@shared_task(name="accounts.run_retention_job_task", acks_late=True, soft_time_limit=240, time_limit=300)
def run_retention_job_task(job: str) -> None:
    """One batch of a retention job; re-queues itself while a batch comes back full."""
    from .retention import run

    _audit, more = run(job)
    if more:
        next_batch(run_retention_job_task, job)
