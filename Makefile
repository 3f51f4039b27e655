# AURA: `make run` sets up and serves the demo; `make test` runs the whole suite.
VENV ?= .venv
PY := $(VENV)/bin/python
# The venv's interpreter: Debian's python3.11 where it can make one (python3.11-venv installed), else
# python3. Debian builds CPython with profile-guided and link-time optimisation; pyenv's default build
# has neither, and AURA's web workers spend a quarter less CPU per call on Debian's (README, Deploy).
BASE_PYTHON ?= /usr/bin/python3.11
# Tests run over plain HTTP against the test client; everything else comes from the environment
# (set DATABASE_URL and REDIS_URL to test against PostgreSQL and Redis). The tests flush the
# cache's Redis database between tests, so Celery's broker gets database 13 of the same server.
# Calls write their usage records themselves (AURA_USAGE_SPOOL=false), so a record is in the
# table when its call returns; tests/metrics/test_spool.py runs the spool, as production does.
TEST_ENV := SECURE_SSL_REDIRECT=false SESSION_COOKIE_SECURE=false DEBUG=false AURA_UPSTREAM_ALLOW_PRIVATE=true DATABASE_CONN_MAX_AGE=0 AURA_USAGE_SPOOL=false \
	SECRET_KEY=$${SECRET_KEY:-test-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz} \
	AURA_VAULT_KEYS=$${AURA_VAULT_KEYS:-1:dGVzdC1vbmx5LXZhdWx0LWtleS0zMi1ieXRlcy0hISE=} \
	CELERY_BROKER_URL=$${CELERY_BROKER_URL:-$${REDIS_URL:+$${REDIS_URL%/*}/13}} \
	PADDLE_PRICE_PRO=pri_01pro000000000000000000000 PADDLE_PRICE_TEAM=pri_01team00000000000000000000

.PHONY: run test setup lint

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(BASE_PYTHON) -m venv $(VENV) 2>/dev/null || python3 -m venv --clear $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

setup: $(VENV)/.installed
	@command -v msgfmt >/dev/null || { apt-get update -qq && apt-get install -y -qq gettext; }
	DATABASE_URL= REDIS_URL= $(PY) manage.py compilemessages --ignore=.venv -v0

run: setup
	bin/run

test: setup
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }  # the e2e tests' browser
	$(TEST_ENV) $(PY) manage.py collectstatic --noinput -v0
	$(TEST_ENV) $(VENV)/bin/pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
