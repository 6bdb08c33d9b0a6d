# Viaduct: build, test, benchmark and fuzz.
#
#   make build      the binaries, into bin/
#   make test       everything CI runs: vet, race-enabled tests (fuzz seed
#                   corpora and the SIPp end-to-end tests included)
#   make bench      Go benchmarks of every package
#   make fuzz       each fuzz target for FUZZTIME (default 60s)
#   make lint       gofmt and go vet

GO       ?= go
FUZZTIME ?= 60s
BENCHTIME ?= 1s

.PHONY: all build test bench bench-compare fuzz lint vet clean

all: build

build:
	$(GO) build -o bin/ ./cmd/...

vet:
	$(GO) vet ./...

lint: vet
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

test: lint
	$(GO) test -race -count=1 -timeout 10m ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

# Side-by-side parser benchmark against sipgo (nested module, own go.mod).
bench-compare:
	cd bench/compare && ./run.sh

fuzz:
	@for t in $$($(GO) test -list '^Fuzz' ./fuzz/ | grep '^Fuzz'); do \
		echo "== $$t ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) ./fuzz/ || exit 1; \
	done

clean:
	rm -rf bin/
