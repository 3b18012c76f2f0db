# aws-eni-ip — build, test, demo. Run `make help` for the targets.
CARGO   ?= cargo
DESTDIR ?=
VERSION ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
IMAGE   ?= aws-eni-ip:$(VERSION)

# The libcni driver of the end-to-end tests and the demo: Debian's libcni in GOPATH mode, no downloads.
DRIVER  := tests/runtime/bin/cni-driver
GOENV   := CGO_ENABLED=0 GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= GOCACHE=$${GOCACHE:-$(CURDIR)/target/go-build}

# virtme-ng (PyPI, pinned) boots the VM of `make e2e-ipvlan`; it lives in a venv under target/.
VNG_VERSION := 1.42
VNG_VENV    := target/vng

.PHONY: help build release driver deps unit test e2e e2e-ipvlan demo bench lint lint-cfn hook install image

help:
	@echo "make build     debug build of the workspace (plugin + ec2-sim)"
	@echo "make release   release build of the plugin: target/release/aws-eni-ip"
	@echo "make unit      the quick loop: unit, command, property, installer and simulator tests (no root, no apt)"
	@echo "make test      installs missing Debian packages, then unit + integration + e2e + simulator tests (root)"
	@echo "make e2e       only the end-to-end tests (tests/e2e/; root)"
	@echo "make e2e-ipvlan  the ipvlan end-to-end cases in a VM whose kernel has ipvlan (root; ~6 min after make release)"
	@echo "make demo      a CNI chain in network namespaces against ec2-sim, with a before/after table (root)"
	@echo "make bench     benchmark (release build)"
	@echo "make lint      rustfmt, clippy -D warnings, gofmt + go vet of the driver, cfn-lint of install/"
	@echo "make lint-cfn  cfn-lint (pinned, from PyPI into target/tools) of install/node-group-hook.yaml"
	@echo "make hook      the node-group hook's Lambda bundle: target/lambda/aws-eni-ip-hook/bootstrap.zip"
	@echo "make install   copy target/release/aws-eni-ip to \$$(DESTDIR)/opt/cni/bin"
	@echo "make image     docker build -f install/Dockerfile (needs a Docker engine; none on the dev machines)"

build:
	$(CARGO) build --workspace --locked

release:
	$(CARGO) build --release --locked -p aws-eni-ip --bin aws-eni-ip

# Debian packages the e2e tests and the demo use; installs only what is missing (apt-get, as root).
deps:
	@bash scripts/install-deps.sh

driver:
	@mkdir -p $(dir $(DRIVER))
	$(GOENV) go build -o $(DRIVER) ./tests/runtime/driver

# Needs neither root nor the Debian test packages: the commands run against fakes, the simulator in-process.
unit:
	$(CARGO) test --locked -p aws-eni-ip --lib --bins --test properties --test conf_examples --test install --test budget
	$(CARGO) test --locked -p ec2-sim

test: deps
	$(CARGO) test --workspace --locked

e2e: deps
	$(CARGO) test --locked -p aws-eni-ip --test e2e

e2e-ipvlan:
	@bash scripts/install-deps.sh --vm
	@$(VNG_VENV)/bin/vng --version 2>/dev/null | grep -qx 'virtme-ng $(VNG_VERSION)' || { \
	  python3 -m venv $(VNG_VENV) && $(VNG_VENV)/bin/pip install --quiet --disable-pip-version-check virtme-ng==$(VNG_VERSION); }
	PATH="$(CURDIR)/$(VNG_VENV)/bin:$$PATH" CARGO="$(CARGO)" bash tests/vm/e2e-ipvlan.sh

demo: deps
	@bash scripts/demo.sh

bench:
	$(CARGO) build --release --locked -p aws-eni-ip --bins --examples -p aws-eni-ip-hook
	$(CARGO) run --release --locked -p aws-eni-ip --example bench

# Python tools from PyPI, pinned, in a venv of their own (Debian's pip refuses system installs).
TOOLS        := target/tools
CFN_LINT     := cfn-lint==1.58.0
CARGO_LAMBDA := cargo-lambda==1.9.2 ziglang==0.13.0

$(TOOLS)/bin/python:
	@bash scripts/install-deps.sh python3 python3-venv
	python3 -m venv $(TOOLS)

lint-cfn: $(TOOLS)/bin/python
	@$(TOOLS)/bin/pip install --quiet --disable-pip-version-check $(CFN_LINT)
	$(TOOLS)/bin/cfn-lint install/node-group-hook.yaml

# cargo-lambda cross-builds with zig; both come from PyPI. Upload the zip and deploy the template.
hook: $(TOOLS)/bin/python
	@$(TOOLS)/bin/pip install --quiet --disable-pip-version-check $(CARGO_LAMBDA)
	PATH=$(CURDIR)/$(TOOLS)/bin:$$PATH cargo-lambda lambda build --release --locked -p aws-eni-ip-hook --output-format zip
	@ls -l target/lambda/aws-eni-ip-hook/bootstrap.zip

lint: lint-cfn
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	@if command -v go >/dev/null; then \
	  out=$$(gofmt -l tests/runtime); if [ -n "$$out" ]; then echo "gofmt: needs formatting: $$out"; exit 1; fi; \
	  $(GOENV) go vet ./tests/runtime/driver; \
	else echo "lint: go not installed, skipping gofmt/go vet of tests/runtime (make deps installs it)"; fi

install:
	@test -x target/release/aws-eni-ip || { echo "target/release/aws-eni-ip missing: run 'make release' first"; exit 1; }
	install -d $(DESTDIR)/opt/cni/bin
	install -m 0755 target/release/aws-eni-ip $(DESTDIR)/opt/cni/bin/aws-eni-ip

# Not runnable on the development machines (no Docker engine); see the comments in install/Dockerfile.
image:
	docker build -f install/Dockerfile -t $(IMAGE) .
