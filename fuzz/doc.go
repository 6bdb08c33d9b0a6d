// Package fuzz holds the native Go fuzz targets that guard Viaduct's hot
// core: the parser and the fast path's rewrite. It has no code of its own
// outside tests.
//
// `go test ./fuzz/` runs every target over its seed corpus (the files in
// testdata/fuzz and the example messages of parser/testdata); `make fuzz`
// runs each one with the fuzzer for FUZZTIME.
package fuzz
