# pullwatch — every dependency installs from here (Python into .venv, Debian packages with apt-get,
# Azurite from npm into node_modules). Targets are idempotent and quiet when already done.
SHELL := /bin/bash
PY := .venv/bin/python
PIP := .venv/bin/pip
STAMP := .make
APT_PACKAGES := docker-registry skopeo
# Only `make previews` (the README pictures) needs these.
PREVIEW_APT_PACKAGES := chromium fonts-lato fonts-noto-color-emoji
# Only `make bench` needs this: nginx is the ACR login server's front in the registry rows.
BENCH_APT_PACKAGES := nginx-light
export PATH := $(CURDIR)/.venv/bin:$(CURDIR)/node_modules/.bin:$(PATH)

.PHONY: setup test demo bench lint typecheck unit clean mutation previews

setup: $(STAMP)/venv $(STAMP)/apt $(STAMP)/npm $(STAMP)/tools

$(STAMP)/venv: requirements.txt requirements-dev.txt pyproject.toml
	@mkdir -p $(STAMP)
	@test -x $(PY) || python3 -m venv .venv
	@echo "setup: installing Python packages into .venv"
	@set -o pipefail; $(PIP) install -q --disable-pip-version-check -r requirements-dev.txt 2>&1 \
	  | { grep -v '^WARNING: Location' || true; }
	@$(PIP) install -q --disable-pip-version-check --no-deps -e . 2>&1 | { grep -v '^WARNING: Location' || true; }
	@touch $@

# $(call apt_install,PACKAGES,LABEL): apt-get install whichever of PACKAGES are missing.
define apt_install
@mkdir -p $(STAMP)
@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
if [ -n "$$missing" ]; then \
  echo "$(2): apt-get install$$missing"; \
  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
fi
@touch $@
endef

$(STAMP)/apt:
	$(call apt_install,$(APT_PACKAGES),setup)

$(STAMP)/apt-bench:
	$(call apt_install,$(BENCH_APT_PACKAGES),bench)

$(STAMP)/apt-previews:
	$(call apt_install,$(PREVIEW_APT_PACKAGES),previews)

# checkov scans infra/ in make test; it pins libraries that clash with the app's Azure SDKs, so it
# lives in its own venv.
$(STAMP)/tools:
	@mkdir -p $(STAMP)
	@test -x .venv-tools/bin/checkov || { echo "setup: installing checkov into .venv-tools"; \
	  python3 -m venv .venv-tools && set -o pipefail && .venv-tools/bin/pip install -q --disable-pip-version-check \
	    checkov==3.3.30 2>&1 | { grep -v '^WARNING: Location' || true; }; }
	@touch $@

$(STAMP)/npm: package.json package-lock.json
	@mkdir -p $(STAMP)
	@echo "setup: npm install (Azurite, card renderer)"
	@npm install --no-audit --no-fund --silent
	@touch $@

lint: setup
	@ruff check shared sandbox tests function_app.py
	@ruff format --check shared sandbox tests function_app.py

typecheck: setup
	@mypy --strict shared/

unit: setup
	@pytest -q -n 2 --dist loadgroup

test: lint typecheck unit

demo: setup
	@$(PY) -m sandbox run sandbox/worlds/demo.yaml

bench: setup $(STAMP)/apt-bench
	@$(PY) -m bench

# The README pictures (docs/img/*.png) from a real demo run, screenshotted by headless Chromium;
# not part of `make test` (see docs/README.md).
previews: setup $(STAMP)/apt-previews
	@$(PY) docs/previews.py

# Mutation score of the core modules against their own unit tests (mutmut); not part of `make test`.
mutation: setup
	@$(PY) -m mutation --max-children 2

clean:
	rm -rf .venv node_modules $(STAMP) .mutation .mypy_cache .ruff_cache .pytest_cache
