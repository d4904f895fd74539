# `make run` sets everything up and serves the dashboard; `make test` runs every test.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
# The data folder (SKILLAUDIT_DATA_DIR, var/ by default, as in settings.py) keeps the
# generated key so sessions survive restarts; SECRET_KEY overrides it. Folder 0700, key 0600
# from the first byte (umask 077 before anything is written).
DATA_DIR := $(or $(SKILLAUDIT_DATA_DIR),var)
KEY_FILE := $(DATA_DIR)/secret_key
WITH_KEY = SECRET_KEY="$${SECRET_KEY:-$$(cat '$(KEY_FILE)')}"

.PHONY: key install run test lint browser bench clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

$(KEY_FILE):
	umask 077 && mkdir -p '$(DATA_DIR)' && chmod 700 '$(DATA_DIR)' && \
	  $(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))' > '$@.tmp' && mv '$@.tmp' '$@'

key: $(KEY_FILE)

# Migrate, load the shipped model list prices (keyed by model, provider and date: a repeat
# changes nothing), add demo data to an empty database, make sure an admin login exists, serve.
run: install $(KEY_FILE)
	$(WITH_KEY) $(PY) manage.py migrate --noinput
	$(WITH_KEY) $(PY) manage.py load_prices runs/data/model_prices.json
	$(WITH_KEY) $(PY) manage.py seed_demo --if-empty
	$(WITH_KEY) $(PY) manage.py collectstatic --noinput --verbosity 0
	$(WITH_KEY) $(PY) manage.py ensure_admin
	$(WITH_KEY) $(VENV)/bin/gunicorn -c skillaudit_site/gunicorn.conf.py

# Chromium drives the browser tests; Debian's package, installed when missing (as root).
browser:
	@test -x /usr/bin/chromium || { echo "installing Debian's chromium for the browser tests"; \
	  apt-get install -y chromium >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y chromium >/dev/null; }; }

# Two pytest workers (the machines have 2 cores); JOBS=0 runs in one process.
JOBS ?= 2
test: install browser
	$(PY) -m pytest -n $(JOBS) $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) var
