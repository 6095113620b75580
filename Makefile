# Syncbridge developer tasks. `make setup` installs the Python-side tools into project-local
# virtualenvs (pinned; re-running is a no-op until a pin changes).

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
REGION := us-east-1

# moto (local AWS), cfn-lint, cargo-lambda and zig (cross-building the Lambda bootstraps).
VENV := .venv
VENV_PINS := moto[server]==5.2.5 cfn-lint==1.58.0 cargo-lambda==1.9.2 ziglang==0.17.1
VENV_STAMP := $(VENV)/.installed-$(shell echo '$(VENV_PINS)' | cksum | cut -d' ' -f1)

# aws-sam-cli lives apart: its pins clash with moto's.
SAM_VENV := .venv-sam
SAM_PINS := aws-sam-cli==1.170.0
SAM_STAMP := $(SAM_VENV)/.installed-$(shell echo '$(SAM_PINS)' | cksum | cut -d' ' -f1)

# schemathesis (property-based runs against the local API) and openapi-spec-validator, apart too:
# schemathesis pins its own jsonschema and hypothesis.
OPENAPI_VENV := .venv-openapi
OPENAPI_PINS := schemathesis==4.32.5 openapi-spec-validator==0.9.0
OPENAPI_STAMP := $(OPENAPI_VENV)/.installed-$(shell echo '$(OPENAPI_PINS)' | cksum | cut -d' ' -f1)

# checkov, the infrastructure-as-code scanner security reviewers run, apart too (its pins clash
# with cfn-lint's). --skip-download keeps it offline and deterministic.
CHECKOV_VENV := .venv-checkov
CHECKOV_PINS := checkov==3.3.30
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(shell echo '$(CHECKOV_PINS)' | cksum | cut -d' ' -f1)

# The providers' own client libraries (HubSpot, Salesforce, Google, Microsoft Graph) and pytest, for the
# conformance suites in infra/conformance that drive our fakes with them.
CONFORMANCE_VENV := .venv-conformance
CONFORMANCE_STAMP := $(CONFORMANCE_VENV)/.installed-$(shell cksum < infra/conformance/requirements.txt | cut -d' ' -f1)

# The dashboard (web/): npm packages installed by `npm ci` from web/package-lock.json.
WEB_STAMP := web/node_modules/.installed-$(shell cksum < web/package-lock.json | cut -d' ' -f1)
CHROMIUM ?= /usr/bin/chromium

CFN_LINT := $(VENV)/bin/cfn-lint
SAM := SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=$(REGION) $(SAM_VENV)/bin/sam
MOTO_SERVER := $(abspath $(VENV)/bin/moto_server)
SCHEMATHESIS := $(abspath $(OPENAPI_VENV)/bin/st)
OPENAPI_SPEC_VALIDATOR := $(abspath $(OPENAPI_VENV)/bin/openapi-spec-validator)
CARGO ?= cargo
FUNCTIONS := dispatcher worker api webhooks

.PHONY: help setup lint lint-template checkov openapi test demo demo-dashboard bench package fuzz conformance web e2e chromium

help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

setup: $(VENV_STAMP) $(SAM_STAMP) $(OPENAPI_STAMP) $(CONFORMANCE_STAMP) $(CHECKOV_STAMP) $(WEB_STAMP) chromium ## Install moto, cfn-lint, cargo-lambda, zig, aws-sam-cli, schemathesis, openapi-spec-validator, checkov, the providers' SDKs, the dashboard's npm packages (pinned) and Chromium

$(VENV_STAMP):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check $(VENV_PINS)
	rm -f $(VENV)/.installed-*
	touch $@

$(OPENAPI_STAMP):
	$(PYTHON) -m venv $(OPENAPI_VENV)
	$(OPENAPI_VENV)/bin/pip install --quiet --disable-pip-version-check $(OPENAPI_PINS)
	rm -f $(OPENAPI_VENV)/.installed-*
	touch $@

$(CONFORMANCE_STAMP): infra/conformance/requirements.txt
	$(PYTHON) -m venv $(CONFORMANCE_VENV)
	$(CONFORMANCE_VENV)/bin/pip install --quiet --disable-pip-version-check -r infra/conformance/requirements.txt
	rm -f $(CONFORMANCE_VENV)/.installed-*
	touch $@

$(SAM_STAMP):
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --disable-pip-version-check $(SAM_PINS)
	rm -f $(SAM_VENV)/.installed-*
	touch $@

$(CHECKOV_STAMP):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check $(CHECKOV_PINS)
	rm -f $(CHECKOV_VENV)/.installed-*
	touch $@

lint: ## rustfmt --check, clippy with warnings as errors, and no test doubles in the Lambda builds (part of `make test`)
	$(CARGO) fmt --all --check
	$(CARGO) clippy --quiet --workspace --all-targets -- -D warnings
	@if $(CARGO) tree -q $(addprefix -p ,$(FUNCTIONS)) -e features -i syncbridge | grep -q test-support; then \
	  echo "a Lambda function's build enables syncbridge/test-support (the in-memory doubles)"; exit 1; fi

lint-template: $(VENV_STAMP) $(SAM_STAMP) ## cfn-lint and `sam validate --lint` on template.yaml (offline)
	$(CFN_LINT) --region $(REGION) -- template.yaml
	$(SAM) validate --lint --region $(REGION) --template-file template.yaml

checkov: $(CHECKOV_STAMP) ## checkov on template.yaml; fails on any finding not suppressed in the template with its reason (part of `make test`)
	$(CHECKOV_VENV)/bin/checkov --file template.yaml --framework cloudformation --compact --quiet --skip-download

openapi: $(OPENAPI_STAMP) ## Rewrite docs/openapi.json from the code, then validate it
	UPDATE_OPENAPI=1 $(CARGO) test --quiet -p syncbridge --lib http::openapi
	$(OPENAPI_VENV)/bin/openapi-spec-validator docs/openapi.json

test: $(VENV_STAMP) $(SAM_STAMP) $(OPENAPI_STAMP) $(CONFORMANCE_STAMP) $(CHECKOV_STAMP) ## Every test: unit, property, integration against moto and the fakes, the OpenAPI document (validator, schemathesis), the dashboard's build and its end-to-end tests in Chromium, the fakes' conformance to the providers' SDKs; then the template linters and checkov
	mkdir -p target
	set -o pipefail; MOTO_SERVER=$(MOTO_SERVER) SCHEMATHESIS=$(SCHEMATHESIS) \
	  OPENAPI_SPEC_VALIDATOR=$(OPENAPI_SPEC_VALIDATOR) $(CARGO) test --workspace 2>&1 | tee target/test-output.log
	$(MAKE) --no-print-directory web
	$(MAKE) --no-print-directory e2e
	$(MAKE) --no-print-directory conformance
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory lint-template
	$(MAKE) --no-print-directory checkov
	@awk -f infra/conformance/count.awk target/test-output.log target/e2e-output.log target/conformance-output.log

# The dashboard's npm packages come from the committed lockfile; its end-to-end tests run in
# Debian's Chromium (Playwright never downloads a browser of its own).
$(WEB_STAMP): web/package-lock.json
	cd web && npm ci --no-audit --no-fund
	touch $@

chromium: ## Install Debian's Chromium when it is missing (for `make e2e`)
	@test -x $(CHROMIUM) || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

web: $(WEB_STAMP) ## The dashboard: OpenAPI types regenerated (fails if the committed ones differ), tsc, eslint, vite build
	cd web && npm run --silent check-gen && npm run --silent typecheck && npm run --silent lint && npm run --silent build

e2e: $(VENV_STAMP) web chromium ## The dashboard end to end in Chromium (Playwright) against a private local stack; screenshots in target/screenshots
	$(CARGO) build --quiet -p syncbridge-local --bin syncbridge
	mkdir -p target
	rm -rf target/screenshots
	set -o pipefail; cd web && MOTO_SERVER=$(MOTO_SERVER) CHROMIUM=$(CHROMIUM) npx playwright test 2>&1 | tee ../target/e2e-output.log

conformance: $(CONFORMANCE_STAMP) ## Drive the provider fakes with the providers' own SDKs (Fireflies: gql against the schema we hold) (part of `make test`)
	$(CARGO) build --quiet -p syncbridge-fakes --bins
	mkdir -p target
	set -o pipefail; FAKES_BIN_DIR=$(abspath target/debug) SYNCBRIDGE_SPECS_DIR=$(abspath infra/fakes/specs) $(CONFORMANCE_VENV)/bin/pytest -q -p no:cacheprovider infra/conformance 2>&1 | tee target/conformance-output.log

demo: $(VENV_STAMP) ## The main job end to end on a fresh local stack, with a readable summary
	MOTO_SERVER=$(MOTO_SERVER) $(CARGO) run --quiet -p syncbridge-local --bin syncbridge -- demo

demo-dashboard: $(VENV_STAMP) web ## The demo, then its stack stays up with the dashboard on its data (Ctrl-C stops it)
	MOTO_SERVER=$(MOTO_SERVER) $(CARGO) run --quiet -p syncbridge-local --bin syncbridge -- demo --serve

# The benchmark and the four function binaries (their cold starts are measured) in one release build.
CARGO_TARGET := $(or $(CARGO_TARGET_DIR),target)

bench: $(VENV_STAMP) ## Benchmarks: pulls against the rate-limited fakes, the dispatcher at 100,000 connections and scheduled syncs on moto with AWS requests counted, cold starts (not part of `make test`)
	$(CARGO) build --quiet --release -p syncbridge-bench $(addprefix -p ,$(FUNCTIONS))
	MOTO_SERVER=$(MOTO_SERVER) $(CARGO_TARGET)/release/syncbridge-bench --out target/bench/results.json

# Lambda's limit is 50 MB zipped; ours is 5 MB (MiB) a function.
LAMBDA_DIR := target/lambda
MAX_ZIP_BYTES := 5242880

package: $(VENV_STAMP) web ## Deployable Lambda zips (release, arm64) in target/lambda/<function>/bootstrap.zip; prints their sizes, fails above 5 MB
	PATH=$(abspath $(VENV))/bin:$$PATH cargo lambda build --release --arm64 --output-format zip \
	  --lambda-dir $(LAMBDA_DIR) $(addprefix --bin ,$(FUNCTIONS))
	@over=0; for f in $(FUNCTIONS); do \
	  z=$(LAMBDA_DIR)/$$f/bootstrap.zip; b=$$(stat -c %s $$z) || exit 1; \
	  awk -v f=$$f -v b=$$b -v max=$(MAX_ZIP_BYTES) 'BEGIN { printf "  %-11s %10d bytes  %5.2f MiB  %s\n", f, b, b / 1048576, (b > max ? "OVER 5 MiB" : "ok") }'; \
	  [ $$b -le $(MAX_ZIP_BYTES) ] || over=1; \
	done; \
	if [ $$over -ne 0 ]; then echo "a zip is over 5 MiB" >&2; exit 1; fi

# cargo-fuzz in a project-local root; the targets live in infra/fuzz (their own workspace).
FUZZ_SECONDS ?= 30
FUZZ_TARGETS := hubspot_signature hubspot_events google_headers graph_notifications gmail_push
CARGO_FUZZ := .tools/bin/cargo-fuzz

$(CARGO_FUZZ):
	$(CARGO) install --locked --root .tools cargo-fuzz

fuzz: $(CARGO_FUZZ) ## Fuzz the webhook parsers and HubSpot's signature check, FUZZ_SECONDS (30) per target (not part of `make test`)
	mkdir -p target/fuzz
	set -o pipefail; for t in $(FUZZ_TARGETS); do \
	  mkdir -p infra/fuzz/corpus/$$t && \
	  RUSTC_BOOTSTRAP=1 PATH=$(abspath .tools/bin):$$PATH $(CARGO) fuzz run --fuzz-dir infra/fuzz --sanitizer none \
	    $$t infra/fuzz/corpus/$$t infra/fuzz/seeds/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -print_final_stats=1 2>&1 \
	    | tee target/fuzz/$$t.log | grep -E '^(#[0-9]+.*(INITED|DONE)|Done|==|stat::number_of_executed_units|stat::average_exec_per_sec)' \
	    || exit 1; \
	done
	@for t in $(FUZZ_TARGETS); do \
	  printf '  %-22s %s, %s exec/s\n' $$t "$$(grep -E '^Done [0-9]+ runs' target/fuzz/$$t.log | tail -1)" \
	    "$$(grep -E '^stat::average_exec_per_sec' target/fuzz/$$t.log | tail -1 | awk '{print $$2}')"; \
	done

