// Package compare benchmarks Viaduct's SIP parser side by side with the
// parser of github.com/emiago/sipgo.
//
// It lives in a module of its own so that sipgo never enters the main
// module's dependency graph; a replace directive points it at the local
// Viaduct tree. Both parsers read the six messages of the parser's own
// benchmarks (parser/testdata) and are measured twice: parsing alone, and
// parsing plus reading the fields a stateless proxy needs (see Fields).
// The script run.sh runs the benchmarks and prints a markdown table of
// medians.
package compare
