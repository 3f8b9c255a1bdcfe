# meshfed's Makefile. `make help` lists the targets.
#
# Binaries that tests and the sandbox run (kube-apiserver, kubectl, etcd) and tools
# (controller-gen) are built from pinned Go modules and cached outside the clone under
# $(CACHE), so only a machine's first run builds them.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CACHE ?= $(or $(MESHFED_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/meshfed)
export MESHFED_CACHE := $(CACHE)

CONTROLLER_GEN_VERSION := v0.21.0
CONTROLLER_GEN := $(CACHE)/tools/controller-gen-$(CONTROLLER_GEN_VERSION)

# The version the binaries and images report (internal/version): git describe when git
# knows the tree, else "dev".
VERSION ?= $(or $(shell git describe --always --dirty 2>/dev/null),dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -X github.com/meshfed/meshfed/internal/version.Version=$(VERSION) -X github.com/meshfed/meshfed/internal/version.Commit=$(COMMIT)

GO_TEST_FLAGS ?= -count=1 -timeout=25m
PKGS ?= ./...

##@ Develop

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} \
		/^[a-zA-Z_-]+:.*?##/ { printf "  %-12s %s\n", $$1, $$2 } \
		/^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

.PHONY: run
run: build binaries ## Run a local sandbox federation: a hub and 3 member clusters (Ctrl-C stops it).
	bin/meshfedctl dev up --dir .meshfed

.PHONY: demo
demo: build binaries ## Play the failover story (local → other region through a gateway with mTLS → back), then a canary and an authorization rule, and print a table.
	rm -rf .meshfed-demo
	bin/meshfedctl dev demo --dir .meshfed-demo

.PHONY: build
build: ## Build meshfed and meshfedctl into bin/.
	go build -ldflags "$(LDFLAGS)" -o bin/ ./cmd/...

.PHONY: images
images: ## Build the meshfed image for linux/amd64 and linux/arm64 (no Docker) into bin/images/: OCI layout, tarballs, digest.
	go run ./hack/images --version "$(VERSION)" --commit "$(COMMIT)" --out bin/images

.PHONY: test
# Tests build as the images do (static, -trimpath): the image test's binary and every
# binary the e2e tests build share one compile of the packages instead of two.
test: binaries ## Run every test, against real kube-apiservers and etcd (builds them on first use).
	MESHFED_ASSETS="$$(bash hack/binaries/build.sh)" CGO_ENABLED=0 GOFLAGS=-trimpath go test $(GO_TEST_FLAGS) $(PKGS)

.PHONY: soak
soak: binaries build ## Run the chaos suite again and again for SOAK (default 30m): faults with traffic flowing.
	CHAOS_SOAK=$(or $(SOAK),30m) MESHFED_ASSETS="$$(bash hack/binaries/build.sh)" go test -count=1 -timeout=90m -run '^TestChaos$$' -v ./e2e/

.PHONY: bench
bench: binaries ## Run the Go benchmarks.
	MESHFED_ASSETS="$$(bash hack/binaries/build.sh)" go test -run='^$$' -bench=. -benchmem $(PKGS)

.PHONY: bench-fleet
bench-fleet: build binaries ## Run the fleet benchmark (FLEET_CLUSTERS, FLEET_SERVICES, FLEET_ENDPOINTS, FLEET_STREAMS, FLEET_RATE, FLEET_DURATION, FLEET_ZONES), then the gateway's, and print each figure beside its budget.
	MESHFED_ASSETS="$$(bash hack/binaries/build.sh)" bin/meshfedctl dev bench-fleet --meshfed bin/meshfed
	bin/meshfedctl dev bench-gateway --meshfed bin/meshfed

.PHONY: bench-gateway
bench-gateway: build ## Measure the east-west gateway beside a minimal splice proxy and direct TCP (pinned with taskset) and print the ratios.
	bin/meshfedctl dev bench-gateway --meshfed bin/meshfed

.PHONY: binaries
binaries: ## Build (once per version) and cache kube-apiserver, kubectl and etcd.
	@bash hack/binaries/build.sh >/dev/null

##@ Generated code

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Regenerate deepcopy functions and CRD YAML from api/.
	bash hack/generate.sh "$(CONTROLLER_GEN)" .

.PHONY: verify
verify: lint verify-generated verify-imports ## Fail if generated files are stale, code is unformatted, go.mod is untidy, or the product imports dev code.

.PHONY: verify-generated
verify-generated: $(CONTROLLER_GEN) ## Fail if generated files or go.mod/go.sum differ from what the tools write.
	bash hack/verify.sh "$(CONTROLLER_GEN)"

.PHONY: verify-imports
verify-imports: ## Fail if a product package (hub, agent, gateway, trust, API) imports a dev package (internal/dev/...).
	bash hack/verify-imports.sh

.PHONY: lint
lint: ## Run gofmt and go vet.
	@out="$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go'))"; \
		if [[ -n $$out ]]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	go vet ./...

$(CONTROLLER_GEN):
	mkdir -p $(CACHE)/tools/bin-$(CONTROLLER_GEN_VERSION)
	GOBIN=$(CACHE)/tools/bin-$(CONTROLLER_GEN_VERSION) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)
	mv $(CACHE)/tools/bin-$(CONTROLLER_GEN_VERSION)/controller-gen $@
