# netflowtcpend: `make test` and `make run` set up what they need on a fresh
# Debian/Ubuntu machine with Go (apt packages when run as root, Go tools into
# .tools/).

SHELL := /bin/bash
GO    ?= go

# Pinned tool versions. The collector modules in go.mod and
# builder-config.yaml must stay on the same release.
BUILDER_VERSION  := v0.165.0
MDATAGEN_VERSION := v0.159.0
GOLANGCI_VERSION := v2.15.0
CLANG            := clang-19
CLANG_VERSION    := 19.1.7

# How much make test fuzzes each fuzz target: FuzzObserve (the DNS parse
# path), FuzzServerName (the TLS ClientHello parse path), FuzzDecode (the
# ring buffer record decoders) and FuzzPrograms (the kernel programs under
# BPF_PROG_TEST_RUN, TLS pieces included; needs root). go test -fuzz takes
# one target at a time. Each runs a number of inputs, about 15 s on two
# cores (make fuzz: FUZZ_TIMES=20 times as many), not for a time: Go 1.26's
# fuzz coordinator can fail a timed run at its deadline with a bare "context
# deadline exceeded" and no failing input when its workers are slow to stop
# on a busy machine (go.dev/issue/75804, fixed in Go 1.27); a count has no
# deadline to race. A FUZZTIME (FUZZTIME=1h make fuzz) fuzzes for that time
# instead, and may end in that error.
FUZZTIME ?=
fuzz-run = $(GO) test -run '^$$' -fuzz '^$(1)$$' -fuzztime $(or $(FUZZTIME),$$(($(2) * $(or $(FUZZ_TIMES),1)))x) $(3)
define fuzz-all
$(call fuzz-run,FuzzObserve,250000,./internal/dnscache/)
$(call fuzz-run,FuzzServerName,400000,./internal/tlshello/)
$(call fuzz-run,FuzzDecode,250000,./bpf/)
$(call fuzz-run,FuzzPrograms,150000,./bpf/)
endef

TOOLS    := $(CURDIR)/.tools
BUILDER  := $(TOOLS)/builder
MDATAGEN := $(TOOLS)/mdatagen
GOLANGCI := $(TOOLS)/golangci-lint
BINARY   := $(CURDIR)/dist/otelcol-netflowtcpend

# make image: the OCI image, as an archive (podman load -i / skopeo copy).
VERSION       := $(shell awk '/^  version:/ {print $$2; exit}' builder-config.yaml)
IMAGE_NAME    ?= localhost/otelcol-netflowtcpend
IMAGE_ARCHIVE := $(CURDIR)/dist/otelcol-netflowtcpend-image.tar

.PHONY: all build image run test unit fuzz lint cross fmt fmt-check generate bench tools clean test-kernels vm k8s-tools k8s-cost

all: build

$(BUILDER):
	GOBIN=$(TOOLS) $(GO) install go.opentelemetry.io/collector/cmd/builder@$(BUILDER_VERSION)

# The module proxy serves mdatagen $(MDATAGEN_VERSION) only as a dependency,
# so it is built from a throwaway module.
$(MDATAGEN):
	rm -rf $(TOOLS)/mdatagen-src && mkdir -p $(TOOLS)/mdatagen-src
	cd $(TOOLS)/mdatagen-src && \
	  $(GO) mod init mdatagen-tool >/dev/null 2>&1 && \
	  $(GO) get go.opentelemetry.io/collector/cmd/mdatagen@$(MDATAGEN_VERSION) && \
	  $(GO) build -o $(MDATAGEN) go.opentelemetry.io/collector/cmd/mdatagen

$(GOLANGCI):
	GOBIN=$(TOOLS) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION)

tools: $(BUILDER) $(MDATAGEN) $(GOLANGCI)

# k8s-tools: a real kube-apiserver and etcd for the Kubernetes tests
# (internal/testutils/kubeapi), built once into .tools/k8s from the Go
# module proxy in throwaway modules (scripts/build-k8s.sh): about 6 minutes
# on 2 cores for the API server, 30 s to 90 s for etcd.
K8S_DIR        := $(TOOLS)/k8s
KUBE_APISERVER := $(K8S_DIR)/kube-apiserver
ETCD           := $(K8S_DIR)/etcd

$(KUBE_APISERVER):
	./scripts/build-k8s.sh $(K8S_DIR) kube-apiserver

$(ETCD):
	./scripts/build-k8s.sh $(K8S_DIR) etcd

k8s-tools: $(KUBE_APISERVER) $(ETCD)

# build: the collector distribution, with ocb. ocb makes an empty
# otelcol-distribution* directory in TMPDIR on every run (its default output
# path, made before it reads output_path from the config) and never removes
# it, so it runs with a TMPDIR of its own that is removed after.
build: $(BUILDER)
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && TMPDIR=$$tmp $(BUILDER) --config builder-config.yaml

# image: dist/otelcol-netflowtcpend-image.tar, an OCI image of the collector
# (scratch base, non-root, file capabilities, OCI labels) built with buildah
# from Debian, which it installs when missing. Needs root.
image: build
	@./scripts/ensure-packages.sh buildah libcap2-bin file
	./scripts/build-image.sh $(BINARY) $(IMAGE_ARCHIVE) $(IMAGE_NAME):$(VERSION)

# run: the collector printing every record to stdout. Needs root (or
# CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON).
run: build
	$(BINARY) --config examples/debug.yaml

# generate: kernel objects with the pinned clang, and the mdatagen metadata
# package. mdatagen names packages after the folder it runs in, so it runs in
# a folder named after the module, whatever this checkout is called.
generate: $(MDATAGEN)
	@./scripts/ensure-packages.sh $(CLANG) llvm-19 libbpf-dev linux-libc-dev
	@$(CLANG) --version | grep -q "clang version $(CLANG_VERSION)" || \
	  { echo "make generate needs $(CLANG) $(CLANG_VERSION), found: $$($(CLANG) --version | head -1)"; exit 1; }
	$(GO) generate ./bpf/ ./internal/testutils/bpftest/
	tmp=$$(mktemp -d) && ln -s $(CURDIR) $$tmp/netflowtcpend && \
	  (cd $$tmp/netflowtcpend && $(MDATAGEN) metadata.yaml); status=$$?; rm -rf $$tmp; exit $$status

# hostcheck (test/hostcheck) runs the steps of make test and make
# test-kernels and fails them, naming what was left, when the host is not as
# it was before: firewall tables, cgroups, named namespaces, links, mounts,
# BPF objects, processes, temporary files (it runs them with a TMPDIR of
# their own). HOSTCHECK=off runs them without it, for a machine where other
# test runs change the host at the same time; CI runs with it.
HOSTCHECK     ?= on
HOSTCHECK_BIN := $(TOOLS)/hostcheck
hostchecked    = $(if $(filter off,$(HOSTCHECK)),,$(HOSTCHECK_BIN) --)

.PHONY: hostcheck test-steps
hostcheck:
	cd test && $(GO) build -o $(HOSTCHECK_BIN) ./hostcheck

# test: every test, of both modules: the component's (.) and the test
# module's (test/: end-to-end, deploy, bench, soak, VM tools, hostcheck),
# under hostcheck. Privileged tests need root; under CI=true they fail
# instead of skipping without it. The end-to-end test runs the built
# binary; the DNS tests run dnsmasq (from dnsmasq-base: the binary, no
# service); the NAT tests run iptables and ip6tables inside namespaces of
# their own; the TLS tests run openssl (s_server, s_client) and curl. As root it also builds the image and runs it with podman and
# runc. Packages are installed before hostcheck starts comparing.
IS_ROOT := $(filter 0,$(shell id -u))
TEST_PACKAGES := dnsmasq-base iptables iproute2 openssl curl
TEST_ENV = NETFLOWTCPEND_BINARY=$(BINARY) NETFLOWTCPEND_K8S_DIR=$(K8S_DIR) $(if $(IS_ROOT),NETFLOWTCPEND_IMAGE=$(IMAGE_ARCHIVE))
test: hostcheck
	@./scripts/ensure-packages.sh --best-effort $(TEST_PACKAGES) $(if $(IS_ROOT),podman runc buildah libcap2-bin file)
	$(hostchecked) $(MAKE) --no-print-directory -j2 test-steps

# test-steps: make test's steps, which make test runs under hostcheck. Its
# builds (the collector and image, the API server and etcd) run two at a
# time (-j2): on a fresh machine each spends its first minute fetching
# modules and its last linking, when the other can use the CPUs; the
# steps below run one after the other.
test-steps: build $(if $(IS_ROOT),image) k8s-tools
	$(GO) vet ./...
	cd test && $(GO) vet ./...
	$(TEST_ENV) $(GO) test -count=1 -timeout 15m ./...
	cd test && $(TEST_ENV) $(GO) test -count=1 -timeout 15m ./...
	$(fuzz-all)

# fuzz: each fuzz target 20 times longer than make test, about 5 minutes
# each (FUZZ_TIMES=240 make fuzz: about an hour each).
fuzz: FUZZ_TIMES ?= 20
fuzz:
	$(fuzz-all)

# unit: the quick edit-test loop: unit tests only (-short skips the tests
# that load BPF programs or run the built collector), no ocb build, no root.
unit:
	$(GO) test -short -count=1 ./...
	cd test && $(GO) test -short -count=1 ./...

# lint: golangci-lint (pinned, installed into .tools/) with .golangci.yaml.
lint: $(GOLANGCI)
	$(GOLANGCI) run ./...
	cd test && $(GOLANGCI) run ./...

# cross: the component builds and vets wherever the collector builds; off
# Linux its Start fails (factory_others.go).
cross:
	GOOS=darwin $(GO) build ./... && GOOS=darwin $(GO) vet ./...
	GOOS=windows $(GO) build ./... && GOOS=windows $(GO) vet ./...

# bench: what the receiver costs the host and whether it loses records, as
# one table (needs root; about 10 minutes; not part of make test).
# BENCH_FLAGS passes more, e.g. BENCH_FLAGS='-rounds 3 -duration 2s' or
# '-only kernel,unit' (go run ./bench -h in test/ lists them).
BENCH_FLAGS ?=
bench: build
	@./scripts/ensure-packages.sh bpftrace
	# The Go benchmarks run inside the bench's network namespace, which
	# reaches no module proxy: fetch what their tests need first.
	$(GO) mod download
	cd test && $(GO) build -o $(TOOLS)/bench ./bench
	$(TOOLS)/bench -binary $(BINARY) $(BENCH_FLAGS)

# fmt, fmt-check: the kernel sources in the style of .clang-format, with
# Debian's clang-format-19. After fmt, run make generate: the objects carry
# line info.
CLANG_FORMAT := clang-format-19
FMT_FILES    := $(wildcard bpf/*.c bpf/*.h internal/testutils/bpftest/*.c)

fmt:
	@./scripts/ensure-packages.sh $(CLANG_FORMAT)
	$(CLANG_FORMAT) -i $(FMT_FILES)

fmt-check:
	@./scripts/ensure-packages.sh $(CLANG_FORMAT)
	@bad=$$(for f in $(FMT_FILES); do $(CLANG_FORMAT) --dry-run --Werror $$f >/dev/null 2>&1 || echo $$f; done); \
	  [ -z "$$bad" ] || { echo "not formatted (run make fmt):" $$bad >&2; exit 1; }

# test-kernels: the tests that depend on the kernel (./bpf, ./receiver,
# ./internal/sockscan, ., test/e2e) on each kernel of KERNELS, booted under
# QEMU from pinned Debian packages (test/vm/kernels.txt), and on this
# machine ("host"); prints one table. Needs root; installs qemu-system-x86,
# busybox-static and what the tests run (TEST_PACKAGES: the guests run the
# host's); kernels go to .tools/vm. KERNELS='5.10 6.1' selects.
# Runs under hostcheck, like make test. Works from a checkout anywhere,
# /tmp included (the guest sees it at its own path).
KERNELS ?=
test-kernels: build hostcheck
	@./scripts/ensure-packages.sh qemu-system-x86 busybox-static cpio $(TEST_PACKAGES)
	KERNELS='$(KERNELS)' $(hostchecked) ./test/vm/test-kernels.sh

# vm: a command in a guest of one kernel, in this directory (read-only; the
# guest's $$VM_OUT is writable), e.g. make vm KERNEL=6.1 CMD='go version'.
# Without CMD, uname -a.
KERNEL ?= 6.1
CMD    ?= uname -a
vm:
	./test/vm/run.sh -k '$(KERNEL)' -c "$$VM_CMD"

vm: export VM_CMD = $(value CMD)

# k8s-cost: what the kubernetes: block costs, on a real API server and
# etcd holding 10,000 pods and 2,000 Services: the collector's RSS with it
# on against off (target: under 64 MiB more), and what each node's watch
# costs the API server (bytes and objects per sync and update; its CPU and
# RSS with K8S_COST_FLAGS' -watchers). Needs root; about 10 minutes; not
# part of make test.
K8S_COST_FLAGS ?=
k8s-cost: build k8s-tools
	cd test && $(GO) build -o $(TOOLS)/k8scost ./k8scost
	cd test && NETFLOWTCPEND_K8S_DIR=$(K8S_DIR) $(TOOLS)/k8scost -binary $(BINARY) $(K8S_COST_FLAGS)

clean:
	rm -rf dist $(TOOLS)

# backpressure: the backpressure tests with the OTLP endpoint failing for
# BACKPRESSURE_FOR (make test runs them with 10s): examples/production.yaml
# under connection churn against an endpoint that stalls, answers 503 or 400,
# and the receiver against a blocked or refusing consumer. Needs root.
# CHURN_RATE is the connections per second (0: as fast as they go).
BACKPRESSURE_FOR ?= 60s
CHURN_RATE       ?= 0
.PHONY: backpressure soak
backpressure: build
	NETFLOWTCPEND_BINARY=$(BINARY) NETFLOWTCPEND_BACKPRESSURE_FOR=$(BACKPRESSURE_FOR) NETFLOWTCPEND_CHURN_RATE=$(CHURN_RATE) \
	  $(GO) test -count=1 -timeout 40m -v -run '^TestBackpressureFromTheNextConsumer$$' ./receiver/
	cd test && NETFLOWTCPEND_BINARY=$(BINARY) NETFLOWTCPEND_BACKPRESSURE_FOR=$(BACKPRESSURE_FOR) NETFLOWTCPEND_CHURN_RATE=$(CHURN_RATE) \
	  $(GO) test -count=1 -timeout 40m -v -run '^TestProductionConfigUnderBackpressure$$' ./e2e/

# soak: examples/production.yaml under steady connection churn with DNS
# lookups (dnsmasq) for SOAK_FOR, printing RSS, heap, records against
# sockets, losses and the DNS cache; exits 1 unless RSS stays flat, every
# socket end has exactly one record and nothing is lost. Needs root; not
# part of make test. SOAK_FLAGS passes more (e.g. -rate 2000).
SOAK_FOR ?= 10m
soak: build
	@./scripts/ensure-packages.sh dnsmasq-base
	cd test && $(GO) build -o $(TOOLS)/soak ./soak
	$(TOOLS)/soak -binary $(BINARY) -duration $(SOAK_FOR) $(SOAK_FLAGS)
