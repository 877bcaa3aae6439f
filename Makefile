# Local development without Docker: see README.md and deploy/local/.
SHELL := /bin/bash
LOCAL := deploy/local

.PHONY: help install infra up down status test soak bench lint admin-key admin-password gateway-reload

help:
	@echo "make up         install what is missing, start everything, print the gateway URL"
	@echo "                (MISP_PROFILE=small make up: one process per service, README: Operating it)"
	@echo "make down       stop everything"
	@echo "make test       up, pytest (args: PYTEST_ARGS=...), down; exit code = pytest's"
	@echo "make infra      install + PostgreSQL + Kafka + gateway (no services)"
	@echo "make install    Debian packages, Kafka jars, uv sync"
	@echo "make status     what runs"
	@echo "make soak       up, the read-your-writes seams 1,000 rounds each (70 to 100 minutes here), down"
	@echo "make bench      up, bench/run.py, down"
	@echo "make lint       ruff + mypy + lint-imports"
	@echo "make admin-key  rotate the site admin's authkey (.local/admin.authkey)"
	@echo "make admin-password  a new temporary password for the site admin (.local/admin.password)"

install:
	@bash $(LOCAL)/install.sh

infra:
	@bash $(LOCAL)/up.sh infra

up:
	@bash $(LOCAL)/up.sh

down:
	@bash $(LOCAL)/down.sh

status:
	@bash $(LOCAL)/postgres.sh status || true
	@bash $(LOCAL)/kafka.sh status || true
	@bash $(LOCAL)/gateway.sh status || true
	@bash $(LOCAL)/services.sh status || true

gateway-reload:
	@bash $(LOCAL)/gateway.sh reload

test:
	@bash $(LOCAL)/test.sh $(PYTEST_ARGS)

soak:
	@MISP_RYW_ROUNDS=1000 MISP_RYW_SLOW_ROUNDS=1000 MISP_RYW_MAIL_ROUNDS=200 bash $(LOCAL)/test.sh tests/e2e/test_read_your_writes.py

bench:
	@bash $(LOCAL)/bench.sh

lint:
	@bash $(LOCAL)/lint.sh

admin-key:
	@set -a; . .local/env; set +a; .venv/bin/python -m identity admin-key --yes

admin-password:
	@set -a; . .local/env; set +a; .venv/bin/python -m identity admin-password --yes
