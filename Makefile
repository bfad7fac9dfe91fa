# bkg-db developer targets. `make help` lists them.
SHELL := /bin/bash
CARGO_TARGET_DIR ?= $(HOME)/.cache/bkg-target
export CARGO_TARGET_DIR
export CARGO_BUILD_JOBS ?= 2
SHARED_CHECKS ?= $(abspath ../shared/checks)

.PHONY: help build run web check test test-web test-deps test-supply-chain dist sbom slsa sign verify test-rust test-slt-postgres test-clients test-bench-smoke smoke lint fmt bench bench-compare bench-pgbench bench-rest bench-flight bench-realtime bench-storage bench-telemetry bench-ab

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## Build the server (debug)
	cargo build -p bkg-db

run: ## Build and start the server on ./.bkg-data (password "postgres" on loopback); the dashboard at http://127.0.0.1:8080/admin/
	@if command -v npm >/dev/null && [[ ! -f web/admin/out/index.html ]]; then scripts/web.sh build; fi
	cargo run -p bkg-db -- serve

web: ## Build the admin dashboard's static export (web/admin/out), which the next cargo build embeds
	scripts/web.sh build

test-web: build ## The dashboard: Vitest, then end to end in Chromium against the debug build (screenshots in web/admin/e2e/artifacts)
	scripts/web.sh test

check: ## Fast inner loop: rustfmt, clippy, unused dependencies, code sizes, unit tests of every crate, SQL logic files in process
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	scripts/unused-deps.sh
	scripts/code-size.py
	@if command -v cargo-nextest >/dev/null; then \
		cargo nextest run --workspace --no-fail-fast -E 'kind(lib) | test(slt_through_the_engine)'; \
	else \
		cargo test --workspace --lib --no-fail-fast && cargo test --workspace --test it slt_through_the_engine; \
	fi

test: test-deps web lint test-rust test-slt-postgres test-clients test-web test-bench-smoke test-supply-chain smoke ## Install what the tests need, then run every test
	@echo "make test: all suites passed"

test-deps: ## Install the tools the tests drive (psql, curl, cargo-nextest)
	@scripts/install-test-deps.sh

test-rust: ## Unit, kernel, crash, SQL logic (engine + pgwire) and driver tests
	@if command -v cargo-nextest >/dev/null; then \
		cargo nextest run --workspace --no-fail-fast; \
	else \
		cargo test --workspace --no-fail-fast; \
	fi

test-slt-postgres: ## Check the .slt files' expected results against a throwaway PostgreSQL
	@scripts/with-postgres.sh cargo nextest run --workspace --run-ignored only slt_against_postgresql

test-clients: build ## Driver tests with real clients: Python psycopg 3 (pytest), Node.js pg and postgrest-js (node --test)
	@scripts/test-clients.sh

test-bench-smoke: build ## The side-by-side benchmark harness at TPC-H SF 0.01: answers checked against DuckDB, timings ignored
	BKG_BIN=$(CARGO_TARGET_DIR)/debug/bkg-db benches/compare.sh --smoke

smoke: build ## Drive the built server as a psql user would (shared smoke check), if present
	@if [[ -x $(SHARED_CHECKS)/smoke.sh ]]; then \
		$(SHARED_CHECKS)/smoke.sh $(CARGO_TARGET_DIR)/debug/bkg-db; \
	else \
		echo "smoke: $(SHARED_CHECKS)/smoke.sh not found, skipped"; \
	fi

lint: ## rustfmt check, clippy with warnings as errors, no unused dependencies, file and function sizes, cargo deny (licences, bans, sources, advisories when reachable), the dashboard's ESLint and tsc --noEmit
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	scripts/unused-deps.sh
	scripts/code-size.py
	scripts/deny.sh
	scripts/web.sh lint

test-supply-chain: build ## sbom, slsa, sign and verify on the debug build with a throwaway key; tampered artifacts must fail
	scripts/supply-chain/selftest.sh

DIST ?= dist
PROFILE ?= release
export DIST PROFILE

dist: ## Build bkg-db (PROFILE=release|debug) and copy it to $(DIST)/
	scripts/supply-chain/run.sh dist

sbom: dist ## CycloneDX SBOM of the binary's crates (and of web/admin once it exists), validated against the schema
	scripts/supply-chain/run.sh sbom

slsa: sbom ## SLSA v1 provenance (in-toto) for the binary and SBOMs
	scripts/supply-chain/run.sh slsa

sign: slsa ## cosign-format signatures of binary, SBOMs and provenance (SIGN_KEY=<PEM EC P-256 key>, or SIGN_THROWAWAY=1)
	scripts/supply-chain/run.sh sign

verify: ## Check the signatures in $(DIST)/ with openssl (VERIFY_KEY=<public PEM>, default the one beside them) and the provenance digests
	scripts/supply-chain/run.sh verify

fmt: ## Format the code
	cargo fmt --all

bench: ## Criterion benchmarks of the kernel (figures go to docs/benchmarks.md)
	cargo bench -p bkg-kernel

SF ?= 1
bench-compare: ## TPC-H (SF=1), load and pgbench beside PostgreSQL, DuckDB and DataFusion (release build; updates docs/benchmarks.md)
	cargo build --release -p bkg-db --bin bkg-db
	BKG_BIN=$(CARGO_TARGET_DIR)/release/bkg-db SF=$(SF) benches/compare.sh

bench-pgbench: ## pgbench side by side with a throwaway PostgreSQL (release build; results in bench-results/)
	cargo build --release -p bkg-db
	BKG_BIN=$(CARGO_TARGET_DIR)/release/bkg-db benches/pgbench/compare.sh

bench-rest: ## REST (wrk) side by side with pgwire (pgbench) on one bkg-db (release build; results in bench-results/)
	cargo build --release -p bkg-db
	BKG_BIN=$(CARGO_TARGET_DIR)/release/bkg-db benches/rest/compare.sh

bench-realtime: ## Realtime fan-out: 1k and 10k subscribers under row-level security, delivery rate and latency (release build; results in bench-results/)
	cargo build --release -p bkg-db --bin bkg-db
	BKG_BIN=$(CARGO_TARGET_DIR)/release/bkg-db benches/realtime/compare.sh

bench-storage: ## Storage: large and small objects up and down through /storage/v1 (local and moto S3) beside the direct transfer (release build; results in bench-results/)
	cargo build --release -p bkg-db --bin bkg-db
	BKG_BIN=$(CARGO_TARGET_DIR)/release/bkg-db benches/storage/compare.sh

bench-telemetry: ## Tracing overhead: pgbench select-only with telemetry off and exporting at CAVE_OTEL_SAMPLING_RATE 0, 0.1, 1.0 (release build; results in bench-results/)
	cargo build --release -p bkg-db --bin bkg-db
	BKG_BIN=$(CARGO_TARGET_DIR)/release/bkg-db benches/telemetry/overhead.sh

bench-ab: ## Two builds side by side, to tell a regression from noise: make bench-ab BASE=<bkg-db binary> [NEW=<binary>]
	benches/ab.sh $(BASE) $${NEW:-$(CARGO_TARGET_DIR)/release/bkg-db}

bench-flight: ## Flight SQL DoGet/DoPut beside PostgreSQL COPY, TPC-H SF1 lineitem (release build; results in bench-results/)
	cargo build --release -p bkg-db --bin bkg-db --example flight_doget
	BKG_BIN=$(CARGO_TARGET_DIR)/release/bkg-db BKG_FLIGHT_RUST_CLIENT=$(CARGO_TARGET_DIR)/release/examples/flight_doget benches/flight/compare.sh
