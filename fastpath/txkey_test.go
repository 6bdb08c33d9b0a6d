package fastpath

import (
	"strings"
	"testing"

	"github.com/viaduct-sip/viaduct/parser"
)

// The one-shot transaction key over a stack buffer and the streaming one
// for long branches hash the same bytes: a branch's key does not depend on
// which path computed it.
func TestTxKeyPathsAgree(t *testing.T) {
	_, w := newTestWorker(t, nil)
	for _, via := range []string{
		"SIP/2.0/UDP Pc33.Atlanta.Example.COM:5060;branch=z9hG4bK776asdhds",
		"SIP/2.0/UDP [2001:DB8::7];branch=z9hG4bK" + strings.Repeat("x", 100),
		"SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK" + strings.Repeat("y", 200),
	} {
		m := mustParse(t, replace(invite3261, "SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds", via))
		v := m.TopVia()
		if got, want := w.txKey3261(v), w.txKey3261Long(v); got != want {
			t.Errorf("%s: %x, streaming %x", via, got, want)
		}
	}
	var v parser.Via
	if w.txKey3261(&v) != w.txKey3261Long(&v) {
		t.Error("empty Via: keys differ")
	}
}
