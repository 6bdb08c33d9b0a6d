package admin

import (
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/viaduct-sip/viaduct/balancer"
	"github.com/viaduct-sip/viaduct/fastpath"
	"github.com/viaduct-sip/viaduct/metrics"
)

// fixedStats reports fixed per-upstream counts.
type fixedStats struct {
	fwd  []fastpath.UpstreamCount
	resp []fastpath.UpstreamResponses
}

func (f fixedStats) AppendUpstreamForwarded(dst []fastpath.UpstreamCount) []fastpath.UpstreamCount {
	return append(dst, f.fwd...)
}

func (f fixedStats) AppendUpstreamResponses(dst []fastpath.UpstreamResponses) []fastpath.UpstreamResponses {
	return append(dst, f.resp...)
}

var _ metrics.UpstreamStats = (*fastpath.Engine)(nil)

// upstreamRow returns the status page's table row of upstream id.
func upstreamRow(t *testing.T, page, id string) string {
	t.Helper()
	for _, row := range strings.Split(page, "<tr>") {
		if strings.Contains(row, "<td>"+id+"</td>") {
			return row
		}
	}
	t.Fatalf("no row for %s in the status page:\n%s", id, page)
	return ""
}

// The status page shows, per upstream, the non-zero response classes
// relayed from it, summed over the reports of its ID hash, 5xx
// highlighted.
func TestStatusPageUpstreamResponses(t *testing.T) {
	pool, err := balancer.NewPool([]balancer.Target{
		{ID: "failing", Addr: netip.MustParseAddrPort("192.0.2.1:5060"), Transport: "udp", Weight: 1},
		{ID: "fine", Addr: netip.MustParseAddrPort("192.0.2.2:5060"), Transport: "udp", Weight: 1},
		{ID: "quiet", Addr: netip.MustParseAddrPort("192.0.2.3:5060"), Transport: "udp", Weight: 1},
	}, balancer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tab := pool.Table()
	hash := func(id string) uint64 {
		tg, _ := tab.ByID(id)
		return tg.IDHash()
	}
	stats := fixedStats{resp: []fastpath.UpstreamResponses{
		{IDHash: hash("failing"), ByClass: [7]uint64{1: 4, 5: 2}},
		{IDHash: hash("failing"), ByClass: [7]uint64{1: 1, 2: 3, 5: 5}}, // another worker's
		{IDHash: hash("fine"), ByClass: [7]uint64{1: 10, 2: 9, 6: 1}},
	}}
	srv := httptest.NewServer(New(Options{Pool: pool, Forwarded: stats}))
	t.Cleanup(srv.Close)
	code, b := do(t, "GET", srv.URL+"/", "")
	if code != 200 {
		t.Fatalf("status page: %d\n%s", code, b)
	}
	page := string(b)
	if !strings.Contains(page, ">Responses relayed</th>") {
		t.Errorf("no Responses relayed column:\n%s", page)
	}
	for id, want := range map[string]string{
		"failing": `<span class="">1xx&nbsp;5</span> · <span class="">2xx&nbsp;3</span> · <span class="down">5xx&nbsp;7</span>`,
		"fine":    `<span class="">1xx&nbsp;10</span> · <span class="">2xx&nbsp;9</span> · <span class="">6xx&nbsp;1</span>`,
		"quiet":   `<span class="muted">none</span>`,
	} {
		if row := upstreamRow(t, page, id); !strings.Contains(row, want) {
			t.Errorf("%s: row lacks %s:\n%s", id, want, row)
		}
	}

	// Without per-upstream counts there is no such column.
	srv2 := httptest.NewServer(New(Options{Pool: pool}))
	t.Cleanup(srv2.Close)
	if _, b := do(t, "GET", srv2.URL+"/", ""); strings.Contains(string(b), "Responses relayed</th>") {
		t.Errorf("a Responses relayed column without counts:\n%s", b)
	}
}

// Over a running engine: each upstream's row shows what the engine
// counted for it, and the rows add up to the responses it relayed.
func TestStatusPageUpstreamResponsesLive(t *testing.T) {
	l := startLive(t, "")
	l.calls(t, 10)
	_, b := do(t, "GET", l.srv.URL+"/", "")
	page := string(b)
	resp := metrics.UpstreamResponsesByID(l.eng)
	var sum [7]uint64
	for _, id := range l.ids {
		tg, _ := l.pool.Table().ByID(id)
		byClass := resp[tg.IDHash()]
		var cells []string
		for k := 1; k <= 6; k++ {
			if byClass[k] > 0 {
				cells = append(cells, `<span class="">`+metrics.ClassLabel(k)+`&nbsp;`+strconv.FormatUint(byClass[k], 10)+`</span>`)
			}
		}
		want := `<span class="muted">none</span></td>`
		if cells != nil {
			want = strings.Join(cells, " · ") + "</td>"
		}
		if row := upstreamRow(t, page, id); !strings.Contains(row, want) {
			t.Errorf("%s: row lacks %s:\n%s", id, want, row)
		}
		for k, n := range byClass {
			sum[k] += n
		}
	}
	// 100 and 180 per INVITE; 200 per INVITE and BYE.
	if want := [7]uint64{1: 20, 2: 20}; sum != want {
		t.Errorf("the upstreams' responses add up to %v, want %v", sum, want)
	}
}
