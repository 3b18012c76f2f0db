# aws-eni-ip — build, test, demo. Run `make help` for the targets.
CARGO   ?= cargo
DESTDIR ?=
VERSION ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
IMAGE   ?= aws-eni-ip:$(VERSION)

# Release artifacts: static musl binaries cross-built with cargo-zigbuild (scripts/dist.sh).
DIST_DIR     ?= target/dist
DIST_ARCHS   ?= x86_64 aarch64
DIST_PROFILE ?= release
# Outside the clone: CI runs in a fresh clone on the same machine and finds the release build warm.
DIST_TARGET  ?= $(HOME)/.cache/aws-eni-ip/target-dist
# zig and cargo-zigbuild (PyPI, pinned) in a venv of their own: cargo-lambda (make hook) pins an
# older zig in target/tools, and the two never share a PATH.
DIST_TOOLS   := $(CURDIR)/target/dist-tools
DIST_PYPI    := ziglang==0.15.2 cargo-zigbuild==0.24.1
# Podman as seen working on the development machines and CI (no Docker engine, no systemd).
PODMAN       ?= podman --runtime runc --cgroup-manager cgroupfs --storage-driver vfs
IMAGE_PLATFORMS ?= linux/amd64,linux/arm64
# The image test (make test): a quick static build for this machine's arch only, in its own dir.
HOST_ARCH    := $(shell uname -m)
HOST_DOCKER_ARCH := $(if $(filter aarch64,$(HOST_ARCH)),arm64,amd64)
IMAGE_TEST_DIR := target/dist-image-test
# One tag per checkout, so that engineers sharing a machine never replace each other's test image.
IMAGE_TEST   ?= localhost/aws-eni-ip:image-test$(subst /,-,$(CURDIR))

# The libcni driver of the end-to-end tests and the demo: Debian's libcni in GOPATH mode, no downloads.
DRIVER  := tests/runtime/bin/cni-driver
GOENV   := CGO_ENABLED=0 GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= GOCACHE=$${GOCACHE:-$(CURDIR)/target/go-build}

# virtme-ng (PyPI, pinned) boots the VM of `make e2e-ipvlan`; it lives in a venv under target/.
VNG_VERSION := 1.42
VNG_VENV    := target/vng

# The node in a box (make e2e-node): components built by scripts/node/build.sh from pinned Go
# modules (scripts/node/versions.env) with the machine's Go, cached here, outside the clone.
NODE_CACHE  ?= /root/.cache/aws-eni-ip/node
CNITOOL     := $(NODE_CACHE)/cnitool-$(shell . scripts/node/versions.env && echo $$CNITOOL_VERSION)/cnitool

.PHONY: help build release driver deps unit test e2e e2e-ipvlan e2e-node cnitool demo bench lint lint-cfn hook hook-e2e moto install image image-push dist dist-build dist-ci dist-check dist-tools image-test lint-k8s lint-iam lint-chart lint-deny manifests

help:
	@echo "make build     debug build of the workspace (plugin + ec2-sim)"
	@echo "make release   release build of the plugin: target/release/aws-eni-ip"
	@echo "make unit      the quick loop: unit, command, property, installer and simulator tests (no root, no apt)"
	@echo "make test      installs missing Debian packages, then unit + integration + e2e + simulator tests (root)"
	@echo "make e2e       only the end-to-end tests (tests/e2e/; root)"
	@echo "make e2e-ipvlan  the ipvlan end-to-end cases in a VM whose kernel has ipvlan (root; ~6 min after make release)"
	@echo "make e2e-node  a one-node Kubernetes (etcd, apiserver, kubelet, containerd, Multus) running the DaemonSet: tests/node/ (root)"
	@echo "make demo      a CNI chain in network namespaces against ec2-sim, with a before/after table (root)"
	@echo "make bench     benchmark (release build)"
	@echo "make lint      rustfmt, clippy -D warnings, gofmt + go vet of the driver, cfn-lint, kubernetes-validate and parliament of install/, the chart, cargo deny"
	@echo "make lint-chart  helm lint (helm pinned, built into ~/.cache/aws-eni-ip/tools) and kubernetes-validate of the chart's renderings; install/daemonset.yaml current"
	@echo "make lint-deny cargo deny check licenses bans sources (cargo-deny pinned, into ~/.cache/aws-eni-ip/tools)"
	@echo "make manifests Chart.yaml's version from Cargo.toml; install/daemonset.yaml = helm template of the chart's defaults"
	@echo "make lint-cfn  cfn-lint (pinned, from PyPI into target/tools) of install/node-group-hook.yaml"
	@echo "make lint-k8s  kubernetes-validate --strict (pinned, into target/tools) of install/daemonset.yaml"
	@echo "make lint-iam  parliament (pinned, into target/tools) of install/iam-policy*.json"
	@echo "make hook      the node-group hook's Lambda zips: target/lambda/{x86_64,arm64}/aws-eni-ip-hook/bootstrap.zip"
	@echo "make hook-e2e  the hook's end-to-end test against moto's server (PyPI, pinned, venv in ~/.cache/aws-eni-ip)"
	@echo "make install   copy target/release/aws-eni-ip to \$$(DESTDIR)/opt/cni/bin"
	@echo "make dist      static musl binaries (x86_64, aarch64), tar.gz each, SHA256SUMS in target/dist; then dist-check"
	@echo "make dist-ci   CI's release build: this arch's binary, tar.gz and SHA256SUMS in target/dist, the other arch type-checked"
	@echo "make dist-check  aarch64 binary under qemu-user-static: version, VERSION, ADD/DEL against ec2-sim (root)"
	@echo "make image     podman build of install/Dockerfile from target/dist: manifest \$$(IMAGE) for amd64 + arm64"
	@echo "make image-push REGISTRY=…  push that manifest list to REGISTRY/aws-eni-ip:\$$(VERSION)"
	@echo "make image-test  the image tests/image.rs runs: this arch, quick static build (part of make test)"

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

# Upstream cnitool (tests/cnitool.rs runs the README's walkthrough with it), cached in NODE_CACHE.
cnitool:
	bash scripts/node/build.sh cnitool

test: deps image-test moto cnitool
	AEI_CNITOOL=$(CNITOOL) AEI_IMAGE=$(IMAGE_TEST) AEI_IMAGE_BINARY=$(CURDIR)/$(IMAGE_TEST_DIR)/linux/$(HOST_DOCKER_ARCH)/aws-eni-ip \
	AEI_PODMAN="$(PODMAN)" $(CARGO) test --workspace --locked

e2e: deps
	$(CARGO) test --locked -p aws-eni-ip --test e2e

e2e-ipvlan:
	@bash scripts/install-deps.sh --vm
	@$(VNG_VENV)/bin/vng --version 2>/dev/null | grep -qx 'virtme-ng $(VNG_VERSION)' || { \
	  python3 -m venv $(VNG_VENV) && $(VNG_VENV)/bin/pip install --quiet --disable-pip-version-check virtme-ng==$(VNG_VERSION); }
	PATH="$(CURDIR)/$(VNG_VENV)/bin:$$PATH" CARGO="$(CARGO)" bash tests/vm/e2e-ipvlan.sh

# Builds (cached) → scripts/node/up.sh → tests/node/ and the cnitool walkthrough → down.sh (always).
e2e-node: deps dist-tools
	@bash scripts/install-deps.sh busybox-static openssl libseccomp-dev
	bash scripts/node/build.sh
	PATH=$(DIST_TOOLS)/bin:$$PATH DIST_TARBALLS=0 bash scripts/dist.sh $(IMAGE_TEST_DIR) image-test $(HOST_ARCH)
	$(CARGO) build --locked -p ec2-sim
	$(CARGO) test --locked --features node-e2e --test node --no-run
	$(CARGO) test --locked --test cnitool --no-run
	CARGO="$(CARGO)" AEI_CNITOOL=$(CNITOOL) bash scripts/node/e2e.sh \
	  $(CURDIR)/$(IMAGE_TEST_DIR)/linux/$(HOST_DOCKER_ARCH)/aws-eni-ip $(CURDIR)/target/debug/ec2-sim

demo: deps
	@bash scripts/demo.sh

bench:
	$(CARGO) build --release --locked -p aws-eni-ip --bins --examples -p aws-eni-ip-hook
	$(CARGO) run --release --locked -p aws-eni-ip --example bench

# Python tools from PyPI, pinned, in a venv of their own (Debian's pip refuses system installs).
TOOLS        := target/tools
CFN_LINT     := cfn-lint==1.58.0
CARGO_LAMBDA := cargo-lambda==1.9.2 ziglang==0.13.0
K8S_VALIDATE := kubernetes-validate==1.37.0
PARLIAMENT   := parliament==1.6.4

$(TOOLS)/bin/python:
	@bash scripts/install-deps.sh python3 python3-venv
	python3 -m venv $(TOOLS)

lint-cfn: $(TOOLS)/bin/python
	@$(TOOLS)/bin/pip install --quiet --disable-pip-version-check $(CFN_LINT)
	$(TOOLS)/bin/cfn-lint install/node-group-hook.yaml

lint-k8s: $(TOOLS)/bin/python
	@$(TOOLS)/bin/pip install --quiet --disable-pip-version-check $(K8S_VALIDATE)
	$(TOOLS)/bin/kubernetes-validate --strict install/daemonset.yaml
	$(TOOLS)/bin/kubernetes-validate --strict -k 1.29 install/daemonset.yaml

# parliament reads stdin when it is not a terminal: give it /dev/null.
lint-iam: $(TOOLS)/bin/python
	@$(TOOLS)/bin/pip install --quiet --disable-pip-version-check $(PARLIAMENT)
	$(TOOLS)/bin/parliament --config install/parliament.yaml \
	  --files install/iam-policy.json,install/iam-policy-subnet.json </dev/null

# The hook's Lambda zip for both architectures: cargo-lambda cross-builds static musl binaries with
# zig (both from PyPI, pinned). Tools and build dir live outside the clone so a fresh clone (CI)
# starts warm; the zips land in the clone, one directory per architecture.
AEI_CACHE        ?= $(HOME)/.cache/aws-eni-ip
HOOK_TOOLS       ?= $(AEI_CACHE)/hook-tools
HOOK_TARGET_DIR  ?= $(AEI_CACHE)/hook-target
HOOK_LAMBDA_DIR  ?= $(CURDIR)/target/lambda
HOOK_ARCHS       ?= x86_64 arm64

hook:
	@grep -qxF '$(CARGO_LAMBDA)' $(HOOK_TOOLS)/pinned 2>/dev/null || { \
	  bash scripts/install-deps.sh python3 python3-venv && python3 -m venv $(HOOK_TOOLS) && \
	  $(HOOK_TOOLS)/bin/pip install --quiet --disable-pip-version-check $(CARGO_LAMBDA) && \
	  echo '$(CARGO_LAMBDA)' > $(HOOK_TOOLS)/pinned; }
	@for arch in $(HOOK_ARCHS); do \
	  case $$arch in x86_64) target=x86_64-unknown-linux-musl;; arm64) target=aarch64-unknown-linux-musl;; \
	    *) echo "make hook: HOOK_ARCHS: $$arch is not x86_64 or arm64" >&2; exit 2;; esac; \
	  echo "== hook $$arch ($$target)"; \
	  PATH=$(HOOK_TOOLS)/bin:$$PATH CARGO_TARGET_DIR=$(HOOK_TARGET_DIR) \
	    cargo-lambda lambda build --release --locked -p aws-eni-ip-hook --target $$target \
	    --output-format zip --lambda-dir $(HOOK_LAMBDA_DIR)/$$arch || exit 1; \
	  $(HOOK_TOOLS)/bin/python -m zipfile -l $(HOOK_LAMBDA_DIR)/$$arch/aws-eni-ip-hook/bootstrap.zip | grep -q '^bootstrap ' || { \
	    echo "make hook: $(HOOK_LAMBDA_DIR)/$$arch/aws-eni-ip-hook/bootstrap.zip holds no bootstrap" >&2; exit 1; }; \
	  ls -l $(HOOK_LAMBDA_DIR)/$$arch/aws-eni-ip-hook/bootstrap.zip; \
	done

# moto's server (PyPI, pinned) for the hook's end-to-end test (hook/tests/moto.rs), in a venv
# outside the clone so CI finds it warm; the test finds it there (or at $$AEI_MOTO_SERVER).
MOTO_VENV ?= $(AEI_CACHE)/venv-moto
MOTO_PYPI := moto[server]==5.2.5

moto:
	@grep -qxF '$(MOTO_PYPI)' $(MOTO_VENV)/pinned 2>/dev/null || { \
	  bash scripts/install-deps.sh python3 python3-venv && python3 -m venv $(MOTO_VENV) && \
	  $(MOTO_VENV)/bin/pip install --quiet --disable-pip-version-check '$(MOTO_PYPI)' && \
	  echo '$(MOTO_PYPI)' > $(MOTO_VENV)/pinned; }

# The hook against moto's EC2 and Auto Scaling (lifecycle actions in ec2-sim: moto has no
# CompleteLifecycleAction); no root needed.
hook-e2e: moto
	AEI_MOTO_SERVER=$(MOTO_VENV)/bin/moto_server $(CARGO) test --locked -p aws-eni-ip-hook --test moto

# The chart: install/daemonset.yaml and Chart.yaml current, helm lint, schema checks of its renderings.
lint-chart: $(TOOLS)/bin/python
	@$(TOOLS)/bin/pip install --quiet --disable-pip-version-check $(K8S_VALIDATE)
	bash scripts/lint-chart.sh $(TOOLS)/bin/kubernetes-validate

# Licenses, bans and sources against deny.toml; advisories need the RustSec database (network).
lint-deny:
	"$$(bash scripts/tools/cargo-deny.sh)" --locked check licenses bans sources

# Chart.yaml's version from Cargo.toml, and install/daemonset.yaml from the chart's default values.
manifests:
	bash scripts/manifests.sh

lint: lint-cfn lint-k8s lint-iam lint-chart lint-deny
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --all-features --locked -- -D warnings
	@if command -v go >/dev/null; then \
	  out=$$(gofmt -l tests/runtime); if [ -n "$$out" ]; then echo "gofmt: needs formatting: $$out"; exit 1; fi; \
	  $(GOENV) go vet ./tests/runtime/driver; \
	else echo "lint: go not installed, skipping gofmt/go vet of tests/runtime (make deps installs it)"; fi

install:
	@test -x target/release/aws-eni-ip || { echo "target/release/aws-eni-ip missing: run 'make release' first"; exit 1; }
	install -d $(DESTDIR)/opt/cni/bin
	install -m 0755 target/release/aws-eni-ip $(DESTDIR)/opt/cni/bin/aws-eni-ip

dist-tools:
	@test -x $(DIST_TOOLS)/bin/python || { bash scripts/install-deps.sh python3 python3-venv && python3 -m venv $(DIST_TOOLS); }
	@$(DIST_TOOLS)/bin/pip install --quiet --disable-pip-version-check $(DIST_PYPI)

dist: dist-build dist-check

dist-build: dist-tools
	CARGO_TARGET_DIR=$(DIST_TARGET) PATH=$(DIST_TOOLS)/bin:$$PATH bash scripts/dist.sh $(DIST_DIR) $(DIST_PROFILE) $(DIST_ARCHS)

# CI's release build: this arch in full with checksums, the other type-checked (scripts/dist-ci.sh).
dist-ci: dist-tools
	CARGO_TARGET_DIR=$(DIST_TARGET) PATH=$(DIST_TOOLS)/bin:$$PATH bash scripts/dist-ci.sh $(DIST_DIR) $(DIST_PROFILE)

dist-check: deps
	@bash scripts/install-deps.sh qemu-user-static
	bash scripts/dist-check.sh $(DIST_DIR)

# One manifest list, both architectures; no RUN step, so nothing runs under emulation.
image: deps dist-build
	-$(PODMAN) manifest rm $(IMAGE) >/dev/null 2>&1
	$(PODMAN) build --platform $(IMAGE_PLATFORMS) --manifest $(IMAGE) -f install/Dockerfile $(DIST_DIR)
	$(PODMAN) manifest inspect $(IMAGE) | jq -r '.manifests[] | "\(.platform.os)/\(.platform.architecture) \(.digest)"'

# Pushes the manifest list built by `make image` (log in first: podman login REGISTRY-HOST).
image-push:
	@test -n "$(REGISTRY)" || { echo "make image-push: set REGISTRY, e.g. REGISTRY=123456789012.dkr.ecr.eu-west-1.amazonaws.com" >&2; exit 2; }
	$(PODMAN) manifest push --all $(IMAGE) docker://$(REGISTRY)/aws-eni-ip:$(VERSION)

# The image that tests/image.rs runs: this arch only, the quick `image-test` cargo profile.
image-test: deps dist-tools
	PATH=$(DIST_TOOLS)/bin:$$PATH DIST_TARBALLS=0 bash scripts/dist.sh $(IMAGE_TEST_DIR) image-test $(HOST_ARCH)
	-$(PODMAN) rmi -f $(IMAGE_TEST) >/dev/null 2>&1
	$(PODMAN) build -q --platform linux/$(HOST_DOCKER_ARCH) -t $(IMAGE_TEST) -f install/Dockerfile $(IMAGE_TEST_DIR) >/dev/null
