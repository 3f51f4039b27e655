"""A gunicorn config for tests: the Free plan takes one call in flight at a time (``--config`` this file)."""

import dataclasses


def post_worker_init(worker):
    from billing import plans, selectors

    plan = dataclasses.replace(plans.FREE, concurrent_requests=1)
    plans.FREE = selectors.FREE = plans.PLANS["free"] = plan
