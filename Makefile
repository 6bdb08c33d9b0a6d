# Viaduct: build, test, benchmark and fuzz.
#
#   make build      the binaries, into bin/
#   make test       everything CI runs: vet, race-enabled tests one package at
#                   a time (timing-sensitive tests do not compete for the
#                   2 cores), fuzz seed
#                   corpora and the SIPp end-to-end tests included)
#   make bench      Go benchmarks of every package
#   make fuzz       each fuzz target for FUZZTIME (default 60s)
#   make demo       Viaduct in front of two responders under load (loopback)
#   make lint       gofmt and go vet (also for darwin: the portable fallback builds)
#   make image      the container image (deploy/Containerfile) as IMAGE, with ENGINE

GO       ?= go
FUZZTIME ?= 60s
BENCHTIME ?= 1s

.PHONY: all build test bench bench-compare bench-e2e bench-load demo fuzz lint vet clean image

all: build

build:
	$(GO) build -o bin/ ./cmd/...

vet:
	$(GO) vet ./...
	cd deploy/kubernetes && $(GO) vet ./...

lint: vet
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	GOOS=darwin GOARCH=arm64 $(GO) build ./...
	GOOS=darwin GOARCH=arm64 $(GO) vet ./...

# test runs everything once, then the parser again with the portable line
# scanner that platforms without the assembly one build (-tags purego), and
# transport/udp's portable fallback on this machine (-tags portableudp), and
# the Kubernetes manifests' checks (deploy/kubernetes, a nested module).
test: lint
	$(GO) test -race -count=1 -p 1 -timeout 15m ./...
	$(GO) test -count=1 -tags purego ./parser/ ./fuzz/
	$(GO) test -count=1 -tags portableudp ./transport/udp/
	cd deploy/kubernetes && $(GO) test -count=1 ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

# Side-by-side parser benchmark against sipgo (nested module, own go.mod).
bench-compare:
	cd bench/compare && ./run.sh

# viaduct-load uac -> viaduct -> two viaduct-load uas: forwarded messages per
# second, added latency and Viaduct's CPU per message.
bench-e2e:
	bench/e2e.sh

# viaduct-load against SIPp, each with a rate ramp, and the ratio.
bench-load:
	bench/sipp-vs-load.sh

# Viaduct in front of two responders under a bounded load, on loopback.
demo:
	scripts/demo.sh

FUZZ_PKGS ?= ./fuzz/ ./fastpath/
fuzz:
	@for p in $(FUZZ_PKGS); do \
		for t in $$($(GO) test -list '^Fuzz' $$p | grep '^Fuzz'); do \
			echo "== $$p $$t ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) $$p || exit 1; \
		done; \
	done

# The container image: static binary, CA certificates, default config, non-root.
# The version is the git description; the build stage needs the golang image.
IMAGE  ?= viaduct:latest
ENGINE ?= docker
image:
	$(ENGINE) build -f deploy/Containerfile \
		--build-arg VERSION=$$(git describe --tags --always --dirty 2>/dev/null || echo devel) \
		-t $(IMAGE) .

clean:
	rm -rf bin/
