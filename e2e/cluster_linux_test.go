//go:build linux

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/admin"
	"github.com/viaduct-sip/viaduct/parser"
)

// cluster is several Viaduct processes started with the same
// configuration, sharing one address (SO_REUSEPORT on one host, anycast
// behind an ECMP route across hosts), in front of clusterUAS upstreams.
// What differs between the two set-ups is in its functions.
type cluster struct {
	t      *testing.T
	dir    string
	shared netip.AddrPort // the address the instances share and advertise
	ups    []*clusterUAS
	insts  []*instance

	// launch starts instance i (its output in dir/name.out).
	launch func(i int, name string) *proc
	// clientListen opens a UDP socket where the clients are.
	clientListen func() (*net.UDPConn, error)
	// direct opens a UDP socket from which datagrams sent to the returned
	// address reach instance i only, responses to them coming back to it
	// (whichever instance relays them).
	direct func(i int) (*net.UDPConn, netip.AddrPort, error)
	// withdraw and announce, where not nil, take instance i's path to the
	// shared address out of the network and put it back, as the routing
	// daemon of an anycast host does: ECMP keeps sending a dead host its
	// share until its route is withdrawn. withdraw runs detect after a
	// kill (the routing layer's detection time, BFD's say), announce once
	// a restarted instance has started.
	withdraw, announce func(i int)
	detect             time.Duration
}

// instance is one Viaduct process of a cluster (restarted in place).
type instance struct {
	idx    int
	admin  string       // base URL of its admin API
	client *http.Client // reaches the admin API (from its namespace)

	mu       sync.Mutex
	p        *proc
	log      string // path of the current process's output
	alive    bool
	launches int
	last     map[string]float64 // last /metrics scrape of the current process
}

// startAll starts every instance and waits until each is ready.
func (c *cluster) startAll() {
	c.t.Helper()
	for _, in := range c.insts {
		c.startInstance(in)
	}
	for _, in := range c.insts {
		c.waitStarted(in, 15*time.Second)
	}
}

// startInstance starts in (again), without waiting.
func (c *cluster) startInstance(in *instance) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.launches++
	name := fmt.Sprintf("viaduct%d", in.idx)
	if in.launches > 1 {
		name += "-" + strconv.Itoa(in.launches)
	}
	in.p = c.launch(in.idx, name)
	in.log = filepath.Join(c.dir, name+".out")
	in.last = nil
}

// waitStarted waits until in's current process logged its start line and
// its admin API answers, and marks it alive.
func (c *cluster) waitStarted(in *instance, limit time.Duration) {
	c.t.Helper()
	in.mu.Lock()
	log := in.log
	in.mu.Unlock()
	waitFor(c.t, filepath.Base(log)+" started", limit, func() bool {
		b, _ := os.ReadFile(log)
		return strings.Contains(string(b), `msg="fastpath started"`)
	})
	waitFor(c.t, filepath.Base(log)+" admin API", limit, func() bool {
		_, err := in.scrape()
		return err == nil
	})
	in.mu.Lock()
	in.alive = true
	in.mu.Unlock()
}

// kill sends SIGKILL to in's process and waits until it is reaped (its
// sockets closed, so out of the kernel's reuseport group); it returns when
// the signal was sent and how long the reaping took.
func (c *cluster) kill(in *instance) (at time.Time, reaped time.Duration) {
	c.t.Helper()
	in.mu.Lock()
	in.alive = false
	p := in.p
	in.mu.Unlock()
	at = time.Now()
	p.stop(syscall.SIGKILL)
	return at, time.Since(at)
}

// isAlive reports whether in's current process is up.
func (in *instance) isAlive() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.alive
}

// scrape reads /metrics of in into a map from series ("name{labels}") to
// value, and keeps it as in's last scrape.
func (in *instance) scrape() (map[string]float64, error) {
	resp, err := in.client.Get(in.admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	m, err := parseMetrics(resp.Body)
	if err != nil {
		return nil, err
	}
	in.mu.Lock()
	in.last = m
	in.mu.Unlock()
	return m, nil
}

// parseMetrics reads a Prometheus text exposition: each sample's value by
// its name and labels (the text before the value), comments skipped.
func parseMetrics(r io.Reader) (map[string]float64, error) {
	m := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read /metrics: %w", err)
	}
	return m, nil
}

// lastScrape returns in's last /metrics scrape.
func (in *instance) lastScrape() map[string]float64 {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.last
}

// sum adds up the series of metric name in m whose labels contain every
// one of labels ("reason=\"parse_error\"", say).
func sum(m map[string]float64, name string, labels ...string) float64 {
	var n float64
	for series, v := range m {
		rest, ok := strings.CutPrefix(series, name)
		if !ok || (rest != "" && rest[0] != '{') {
			continue
		}
		match := true
		for _, l := range labels {
			match = match && strings.Contains(rest, l)
		}
		if match {
			n += v
		}
	}
	return n
}

// upstreamHealth reads the upstreams' health from in's admin API.
func (in *instance) upstreamHealth() (map[string]string, error) {
	l, err := in.upstreams()
	if err != nil {
		return nil, err
	}
	h := map[string]string{}
	for _, u := range l {
		h[u.ID] = u.Health
	}
	return h, nil
}

// upstreams reads the upstreams from in's admin API.
func (in *instance) upstreams() ([]admin.Upstream, error) {
	resp, err := in.client.Get(in.admin + "/api/v1/upstreams")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var l admin.UpstreamList
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /api/v1/upstreams: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		return nil, fmt.Errorf("GET /api/v1/upstreams: %w", err)
	}
	return l.Upstreams, nil
}

// healthWatch polls every live instance's admin API and /metrics until
// stop closes, and records every moment an instance reported an upstream
// other than up (in the API or as viaduct_upstream_up 0).
type healthWatch struct {
	mu    sync.Mutex
	downs []string
	polls int
}

func (c *cluster) watchHealth(stop <-chan struct{}) (*healthWatch, <-chan struct{}) {
	w := &healthWatch{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			for _, in := range c.insts {
				if in.isAlive() {
					w.poll(in)
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return w, done
}

// poll reads in's upstream health once (an instance killed meanwhile
// gives no answer, which is not a finding).
func (w *healthWatch) poll(in *instance) {
	h, err := in.upstreamHealth()
	m, merr := in.scrape()
	if !in.isAlive() {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	at := time.Now().Format("15:04:05.000")
	if err == nil {
		w.polls++
		for id, s := range h {
			if s != "up" {
				w.downs = append(w.downs, fmt.Sprintf("%s instance %d: admin API says %s is %s", at, in.idx, id, s))
			}
		}
	}
	if merr == nil {
		for series, v := range m {
			if strings.HasPrefix(series, "viaduct_upstream_up{") && v != 1 {
				w.downs = append(w.downs, fmt.Sprintf("%s instance %d: %s %v", at, in.idx, series, v))
			}
		}
	}
}

func (w *healthWatch) result() (downs []string, polls int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.downs...), w.polls
}

// directCheck sends one MESSAGE per Call-ID in ids through instance i
// alone and waits (retransmitting every interval, 10 s at most) for a 200
// to each. It returns how many were answered and how long the last took.
func (c *cluster) directCheck(i int, ids []string, every time.Duration) (answered int, took time.Duration) {
	c.t.Helper()
	conn, target, err := c.direct(i)
	if err != nil {
		c.t.Fatalf("socket to instance %d: %v", i, err)
	}
	defer conn.Close()
	local := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	reqs := make(map[string][]byte, len(ids))
	for n, id := range ids {
		reqs[id] = fmt.Appendf(nil, "MESSAGE sip:check@%s SIP/2.0\r\n"+
			"Via: SIP/2.0/UDP %s;branch=z9hG4bK-check-%d-%d;rport\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:check@example.net>;tag=check%d\r\nTo: <sip:check@example.com>\r\n"+
			"Call-ID: %s\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n", c.shared, local, i, n, n, id)
	}
	begin := time.Now()
	got := map[string]bool{}
	buf := make([]byte, 65536)
	var m parser.Message
	for len(got) < len(ids) && time.Since(begin) < 10*time.Second {
		for id, r := range reqs {
			if !got[id] {
				conn.WriteToUDPAddrPort(r, target)
			}
		}
		conn.SetReadDeadline(time.Now().Add(every))
		for len(got) < len(ids) {
			n, _, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				break
			}
			if parser.Parse(buf[:n], &m) == nil && !m.IsRequest() && m.StatusCode() == 200 {
				if id := string(m.CallID()); reqs[id] != nil && !got[id] {
					got[id] = true
					took = time.Since(begin)
				}
			}
		}
	}
	return len(got), took
}

// relayCheck sends, through each instance in turn, MESSAGEs with Call-IDs
// of its own, and checks that each answered, that every other instance
// relayed some of the responses (the upstreams answer from sockets whose
// 4-tuples hash to any instance), and that the same Call-ID sent through
// every instance reaches one upstream.
func (c *cluster) relayCheck(prefix string, perInstance int) {
	c.t.Helper()
	same := make([]string, perInstance)
	for n := range same {
		same[n] = fmt.Sprintf("%s-same-%d@check", prefix, n)
	}
	for i, in := range c.insts {
		before := c.scrapeAll()
		ids := make([]string, perInstance)
		for n := range ids {
			ids[n] = fmt.Sprintf("%s-via%d-%d@check", prefix, i, n)
		}
		if got, _ := c.directCheck(i, ids, 500*time.Millisecond); got != len(ids) {
			c.t.Errorf("through instance %d alone: %d of %d MESSAGEs answered", i, got, len(ids))
		}
		if got, _ := c.directCheck(i, same, 500*time.Millisecond); got != len(same) {
			c.t.Errorf("through instance %d alone: %d of %d shared Call-IDs answered", i, got, len(same))
		}
		after := c.scrapeAll()
		for j := range c.insts {
			relayed := sum(after[j], "viaduct_responses_forwarded_total") - sum(before[j], "viaduct_responses_forwarded_total")
			c.t.Logf("%s: requests through instance %d; instance %d relayed %v responses", prefix, i, j, relayed)
			if j != i && relayed == 0 {
				c.t.Errorf("instance %d relayed none of the responses to requests instance %d forwarded", j, in.idx)
			}
		}
	}
}

// scrapeAll scrapes every instance, failing the test if one does not
// answer.
func (c *cluster) scrapeAll() []map[string]float64 {
	c.t.Helper()
	all := make([]map[string]float64, len(c.insts))
	for i, in := range c.insts {
		m, err := in.scrape()
		if err != nil {
			c.t.Fatalf("instance %d: %v", i, err)
		}
		all[i] = m
	}
	return all
}

// checkOneUpstreamPerCall fails the test for every Call-ID seen by more
// than one upstream, and returns how many Call-IDs each one saw.
func (c *cluster) checkOneUpstreamPerCall() []int {
	c.t.Helper()
	seen := map[string]int{}
	n := make([]int, len(c.ups))
	split := 0
	for i, u := range c.ups {
		for id := range u.callIDs() {
			n[i]++
			if j, ok := seen[id]; ok {
				split++
				if split <= 10 {
					c.t.Errorf("call %s reached %s and %s", id, c.ups[j].name, u.name)
				}
			}
			seen[id] = i
		}
	}
	if split > 10 {
		c.t.Errorf("... %d calls in all reached both upstreams", split)
	}
	return n
}

// checkNoDrops fails the test if any live instance counted a response it
// could not authenticate or a message it could not parse.
func (c *cluster) checkNoDrops() {
	c.t.Helper()
	for _, in := range c.insts {
		m := in.lastScrape()
		if in.isAlive() {
			if fresh, err := in.scrape(); err == nil {
				m = fresh
			}
		}
		for _, reason := range []string{"forged_response", "parse_error", "unroutable_response"} {
			if n := sum(m, "viaduct_messages_dropped_total", `reason="`+reason+`"`); n != 0 {
				c.t.Errorf("instance %d dropped %v messages as %s", in.idx, n, reason)
			}
		}
	}
}
