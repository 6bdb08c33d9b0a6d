package metrics

import (
	"github.com/viaduct-sip/viaduct/transport"

	"cmp"
	"net/netip"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/viaduct-sip/viaduct/balancer"
	"github.com/viaduct-sip/viaduct/fastpath"
	"github.com/viaduct-sip/viaduct/health"
	"github.com/viaduct-sip/viaduct/internal/version"
	"github.com/viaduct-sip/viaduct/parser"
)

// Engine is what the collector reads from the fast path.
// *fastpath.Engine satisfies it.
type Engine interface {
	// WorkerStats appends one Stats per worker, in listen then worker
	// order; the last of each listener's reads its origin socket (the
	// replies to health probes).
	WorkerStats(dst []fastpath.Stats) []fastpath.Stats
	// WorkerPositions returns the transport worker of each entry of
	// WorkerStats, in the same order.
	WorkerPositions() []transport.Position
	// ListenAddrs returns the listen addresses, in index order.
	ListenAddrs() []netip.AddrPort
	// Config returns the engine's configuration (its Workers).
	Config() fastpath.Config
}

// Health is what the collector reads from the health checker.
// *health.Checker satisfies it.
type Health interface {
	// Status returns every target's state, in configuration order.
	Status() []health.Status
	// DroppedReplies counts probe replies the checker could not queue.
	DroppedReplies() uint64
}

// Pool is what the collector reads from the balancer. *balancer.Pool
// satisfies it.
type Pool interface {
	// Table returns the current lookup table.
	Table() *balancer.Table
}

// UpstreamStats is implemented by an engine that counts the requests it
// balances to each upstream and the responses it relays from each
// (*fastpath.Engine does): counts per target ID hash
// (balancer.Target.IDHash); an ID hash appearing twice is summed.
type UpstreamStats interface {
	AppendUpstreamForwarded(dst []fastpath.UpstreamCount) []fastpath.UpstreamCount
	AppendUpstreamResponses(dst []fastpath.UpstreamResponses) []fastpath.UpstreamResponses
}

// Options says where a Collector reads from. Every field may be nil: the
// metrics of that source are then left out.
type Options struct {
	Engine  Engine
	Health  Health
	Pool    Pool
	Reloads *Reloads
	// UpstreamStats gives the per-upstream forwarded requests
	// (viaduct_upstream_requests_forwarded_total) and relayed responses
	// (viaduct_upstream_responses_total); nil means the Engine's when it
	// implements UpstreamStats.
	UpstreamStats UpstreamStats
}

// Collector is a prometheus.Collector that reads Viaduct's counters and
// states when it is scraped: the fast path's per-worker counters (which
// the workers write without synchronisation beyond single-writer atomic
// stores, so a scrape costs the workers nothing), the balancer's current
// table, the health checker's status and the configuration reloads. Create
// it with New and register it (NewRegistry adds the Go and process
// collectors). It is safe for concurrent use.
type Collector struct {
	o Options

	requests, reqForwarded, respReceived, respForwarded *prometheus.Desc
	localReplies, localResponses, drops                 *prometheus.Desc
	dgIn, dgOut, bytesIn, bytesOut, kernelDrops         *prometheus.Desc
	workerDgIn, keyFallbacks, dialogRouted              *prometheus.Desc
	flowsReopened, largeRequests                        *prometheus.Desc
	dropLogSuppressed                                   *prometheus.Desc

	upInfo, upUp, upAdmin, upWeight, upPriority, upSelected, upShare *prometheus.Desc
	upForwarded, upResponses, poolSelectable, poolBuilds, poolPanic  *prometheus.Desc

	probes, probeFailures, passive, rtt, srtt, healthChanged, droppedReplies *prometheus.Desc
	trafficChecks                                                            *prometheus.Desc

	reloads, reloadOK, reloadTime, configInfo, buildInfo *prometheus.Desc
	buildLabels                                          [3]string
}

// New returns a Collector reading from o.
func New(o Options) *Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	if o.UpstreamStats == nil {
		if us, ok := o.Engine.(UpstreamStats); ok {
			o.UpstreamStats = us
		}
	}
	c := &Collector{o: o}

	c.requests = d("viaduct_requests_received_total", "SIP requests received and parsed, by method (other: methods Viaduct does not name).", "method")
	c.reqForwarded = d("viaduct_requests_forwarded_total", "SIP requests sent on to a next hop.")
	c.respReceived = d("viaduct_responses_received_total", "SIP responses received and parsed.")
	c.respForwarded = d("viaduct_responses_forwarded_total", "SIP responses relayed towards the client, by status class (1xx..6xx).", "class")
	c.localReplies = d("viaduct_local_replies_total", "Responses Viaduct generated itself, by status code (200 answers OPTIONS addressed to Viaduct; the others refuse a request).", "code")
	c.localResponses = d("viaduct_local_responses_received_total", "Responses addressed to Viaduct itself (replies to its health probes).")
	c.drops = d("viaduct_messages_dropped_total", "Messages not forwarded, by reason; a request refused with a local reply counts here and in viaduct_local_replies_total.", "reason")
	c.dgIn = d("viaduct_datagrams_received_total", "UDP datagrams received.")
	c.dgOut = d("viaduct_datagrams_sent_total", "UDP datagrams sent (forwarded messages and local replies).")
	c.bytesIn = d("viaduct_received_bytes_total", "UDP payload bytes received.")
	c.bytesOut = d("viaduct_sent_bytes_total", "UDP payload bytes sent.")
	c.kernelDrops = d("viaduct_kernel_receive_drops_total", "Datagrams the kernel dropped on Viaduct's sockets (receive buffer full).")
	c.keyFallbacks = d("viaduct_balance_key_fallbacks_total", "Balanced requests that lacked the key configured for their method and were hashed on their Call-ID instead.")
	c.dialogRouted = d("viaduct_balance_dialog_routed_total", "In-dialog requests sent to the upstream their next Route or Request-URI names instead of the one balancing would pick.")
	c.flowsReopened = d("viaduct_flows_reopened_total", "Responses whose client's TCP or TLS connection was gone, sent to the Via's address over a new connection (orphan_responses: reopen).")
	c.largeRequests = d("viaduct_large_requests_total", "Requests for a UDP next hop larger than udp_mtu, by the transport they went over: tcp (an upstream with accepts_tcp), or udp anyway.", "transport")
	c.dropLogSuppressed = d("viaduct_drop_log_lines_suppressed_total", "Debug log lines about dropped and refused messages suppressed by the rate limit (fastpath.DropLogRate lines a second); 0 unless log_level is debug.")
	c.workerDgIn = d("viaduct_worker_datagrams_received_total", "UDP datagrams received per worker socket (how SO_REUSEPORT spreads the traffic); worker=\"origin\" is the socket health probes leave from and their replies come back to.", "listen", "worker")

	c.upInfo = d("viaduct_upstream_info", "Configured upstream targets (value 1), with their address and transport.", "upstream", "address", "transport")
	c.upUp = d("viaduct_upstream_up", "Health of the upstream as the balancer uses it: 1 up, 0 down.", "upstream")
	c.upAdmin = d("viaduct_upstream_admin_state", "Admin state of the upstream: 1 for the current state (enabled, draining, disabled), 0 for the others.", "upstream", "state")
	c.upWeight = d("viaduct_upstream_weight", "Configured weight of the upstream.", "upstream")
	c.upPriority = d("viaduct_upstream_priority", "Configured priority group of the upstream (lower is preferred).", "upstream")
	c.upSelected = d("viaduct_upstream_selected", "Whether the balancer currently sends new dialogs (requests=new_dialog) or in-dialog requests (requests=in_dialog) to the upstream: 1 yes, 0 no.", "upstream", "requests")
	c.upShare = d("viaduct_upstream_share_ratio", "Fraction of new dialogs the balancer assigns to the upstream (0 to 1).", "upstream")
	c.upForwarded = d("viaduct_upstream_requests_forwarded_total", "Requests the balancer sent to the upstream, in-dialog requests that followed their dialog to it included.", "upstream")
	c.upResponses = d("viaduct_upstream_responses_total", "Responses relayed from the upstream (by source address) towards the client, by status class (1xx..6xx).", "upstream", "class")
	c.poolSelectable = d("viaduct_pool_selectable_targets", "Upstreams the balancer can currently choose for new dialogs (requests=new_dialog) or in-dialog requests (requests=in_dialog); 0 means such requests get 503.", "requests")
	c.poolBuilds = d("viaduct_pool_table_builds_total", "Lookup tables the balancer has published (one per health, admin or configuration change).")
	c.poolPanic = d("viaduct_pool_panic", "1 while every upstream that is not disabled is down and the balancer forwards to all of them anyway (panic mode, health.all_down: forward), else 0.")

	c.probes = d("viaduct_upstream_probes_total", "Health probes sent to the upstream (retransmissions not counted).", "upstream")
	c.probeFailures = d("viaduct_upstream_probe_failures_total", "Failed health probes, by cause: timeout (no final response), bad_code (a code not accepted), send_error.", "upstream", "cause")
	c.passive = d("viaduct_upstream_passive_503_bursts_total", "Bursts of 503 responses that marked the upstream down (passive check).", "upstream")
	c.trafficChecks = d("viaduct_upstream_traffic_checks_total", "Health check rounds the upstream passed with its own responses to forwarded requests (evidence of life), with or without a probe.", "upstream")
	c.rtt = d("viaduct_upstream_probe_rtt_seconds", "Round-trip time of health probes answered without retransmission.", "upstream")
	c.srtt = d("viaduct_upstream_probe_rtt_smoothed_seconds", "Exponentially weighted average of the probe round-trip time (weight 1/8 per sample).", "upstream")
	c.healthChanged = d("viaduct_upstream_health_last_change_timestamp_seconds", "When the upstream's health last changed (or when it was first configured), as a Unix time.", "upstream")
	c.droppedReplies = d("viaduct_health_probe_replies_dropped_total", "Probe replies the health checker could not queue (its goroutine was behind; those probes time out).")

	c.reloads = d("viaduct_config_reloads_total", "Configuration reloads, by result (success, failure).", "result")
	c.reloadOK = d("viaduct_config_last_reload_successful", "Whether the last configuration load attempt succeeded: 1 yes, 0 no.")
	c.reloadTime = d("viaduct_config_last_reload_success_timestamp_seconds", "When the configuration in use was loaded, as a Unix time.")
	c.configInfo = d("viaduct_config_info", "The configuration in use (value 1); hash is the first 16 hex digits of the SHA-256 of the file.", "hash")
	c.buildInfo = d("viaduct_build_info", "Build of the running binary (value 1).", "version", "revision", "goversion")
	c.buildLabels = buildLabels()
	return c
}

// buildLabels are the labels of viaduct_build_info: the version and
// revision that --version prints (internal/version), and the Go version.
func buildLabels() [3]string {
	v := version.Get()
	return [3]string{v.Version, cmp.Or(v.Revision, "unknown"), v.GoVersion}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.requests, c.reqForwarded, c.respReceived, c.respForwarded,
		c.localReplies, c.localResponses, c.drops,
		c.dgIn, c.dgOut, c.bytesIn, c.bytesOut, c.kernelDrops, c.workerDgIn, c.keyFallbacks, c.dialogRouted,
		c.flowsReopened, c.largeRequests,
		c.dropLogSuppressed,
		c.upInfo, c.upUp, c.upAdmin, c.upWeight, c.upPriority, c.upSelected, c.upShare,
		c.upForwarded, c.upResponses, c.poolSelectable, c.poolBuilds, c.poolPanic,
		c.probes, c.probeFailures, c.passive, c.rtt, c.srtt, c.healthChanged, c.droppedReplies, c.trafficChecks,
		c.reloads, c.reloadOK, c.reloadTime, c.configInfo, c.buildInfo,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: it reads every source once.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.buildInfo, prometheus.GaugeValue, 1, c.buildLabels[:]...)
	if c.o.Engine != nil {
		c.collectEngine(ch)
	}
	var tab *balancer.Table
	if c.o.Pool != nil {
		tab = c.o.Pool.Table()
		c.collectPool(ch, tab)
	}
	if c.o.Health != nil {
		c.collectHealth(ch, tab == nil)
	}
	if c.o.Reloads != nil {
		c.collectReloads(ch)
	}
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// MethodLabel returns the method label of viaduct_requests_received_total
// for index i of fastpath.Stats.RequestsByMethod: the method's name, or
// "other".
func MethodLabel(i int) string {
	if s := parser.Method(i).String(); s != "" {
		return s
	}
	return "other"
}

// ClassLabel returns the class label of index k (1..6) of
// fastpath.Stats.ResponsesForwarded and fastpath.UpstreamResponses.ByClass:
// "1xx" ... "6xx".
func ClassLabel(k int) string { return strconv.Itoa(k) + "xx" }

// UpstreamResponsesByID returns the responses relayed from each upstream
// by class, keyed by target ID hash, summing any ID hash reported twice.
func UpstreamResponsesByID(us UpstreamStats) map[uint64][7]uint64 {
	m := map[uint64][7]uint64{}
	for _, r := range us.AppendUpstreamResponses(nil) {
		sum := m[r.IDHash]
		for k, n := range r.ByClass {
			sum[k] += n
		}
		m[r.IDHash] = sum
	}
	return m
}

func (c *Collector) collectEngine(ch chan<- prometheus.Metric) {
	per := c.o.Engine.WorkerStats(nil)
	listen := c.o.Engine.ListenAddrs()
	var sum fastpath.Stats
	for i := range per {
		sum.Add(&per[i])
	}
	pos, workers := c.o.Engine.WorkerPositions(), c.o.Engine.Config().Workers
	for i, p := range pos {
		if i >= len(per) || p.Kind != transport.UDP || p.Listener >= len(listen) {
			continue
		}
		worker := strconv.Itoa(p.Worker)
		if p.Worker == workers {
			worker = "origin"
		}
		counter(ch, c.workerDgIn, per[i].DatagramsIn, listen[p.Listener].String(), worker)
	}
	byMethod := map[string]uint64{}
	for i, v := range sum.RequestsByMethod {
		byMethod[MethodLabel(i)] += v
	}
	for m, v := range byMethod {
		counter(ch, c.requests, v, m)
	}
	counter(ch, c.reqForwarded, sum.RequestsForwarded)
	counter(ch, c.respReceived, sum.ResponsesReceived)
	for k := 1; k < len(sum.ResponsesForwarded); k++ {
		counter(ch, c.respForwarded, sum.ResponsesForwarded[k], ClassLabel(k))
	}
	for i, v := range sum.LocalReplies {
		counter(ch, c.localReplies, v, strconv.Itoa(fastpath.LocalCode(i).Status()))
	}
	counter(ch, c.localResponses, sum.LocalResponses)
	for i := fastpath.DropReason(1); i < fastpath.NumDropReasons; i++ {
		counter(ch, c.drops, sum.Drops[i], i.String())
	}
	counter(ch, c.dgIn, sum.DatagramsIn)
	counter(ch, c.dgOut, sum.DatagramsOut)
	counter(ch, c.bytesIn, sum.BytesIn)
	counter(ch, c.bytesOut, sum.BytesOut)
	counter(ch, c.kernelDrops, sum.KernelDrops)
	counter(ch, c.keyFallbacks, sum.KeyFallbacks)
	counter(ch, c.dialogRouted, sum.DialogRouted)
	counter(ch, c.flowsReopened, sum.FlowsReopened)
	counter(ch, c.largeRequests, sum.LargeToTCP, "tcp")
	counter(ch, c.largeRequests, sum.LargeOverUDP, "udp")
	counter(ch, c.dropLogSuppressed, sum.DropLogsSuppressed)
}

func (c *Collector) collectPool(ch chan<- prometheus.Metric, tab *balancer.Table) {
	counter(ch, c.poolBuilds, tab.Version())
	gauge(ch, c.poolPanic, b2f(tab.Panic()))
	n, _ := tab.Live(false)
	gauge(ch, c.poolSelectable, float64(n), "new_dialog")
	n, _ = tab.Live(true)
	gauge(ch, c.poolSelectable, float64(n), "in_dialog")
	var fwd map[uint64]uint64
	var resp map[uint64][7]uint64
	if c.o.UpstreamStats != nil {
		fwd = map[uint64]uint64{}
		for _, u := range c.o.UpstreamStats.AppendUpstreamForwarded(nil) {
			fwd[u.IDHash] += u.Count
		}
		resp = UpstreamResponsesByID(c.o.UpstreamStats)
	}
	for _, t := range tab.Snapshot() {
		id := t.ID
		gauge(ch, c.upInfo, 1, id, t.Addr.String(), t.Transport)
		gauge(ch, c.upUp, b2f(t.Health == balancer.Up), id)
		for _, a := range []balancer.AdminState{balancer.Enabled, balancer.Draining, balancer.Disabled} {
			gauge(ch, c.upAdmin, b2f(t.Admin == a), id, a.String())
		}
		gauge(ch, c.upWeight, float64(t.Weight), id)
		gauge(ch, c.upPriority, float64(t.Priority), id)
		gauge(ch, c.upSelected, b2f(t.NewDialogs), id, "new_dialog")
		gauge(ch, c.upSelected, b2f(t.InDialog), id, "in_dialog")
		gauge(ch, c.upShare, t.Share, id)
		if fwd != nil {
			counter(ch, c.upForwarded, fwd[t.IDHash()], id)
			byClass := resp[t.IDHash()]
			for k := 1; k < len(byClass); k++ {
				counter(ch, c.upResponses, byClass[k], id, ClassLabel(k))
			}
		}
	}
}

// collectHealth exports the probe metrics; states too when there is no
// pool to read them from.
func (c *Collector) collectHealth(ch chan<- prometheus.Metric, states bool) {
	bounds := health.RTTBucketBounds()
	for _, s := range c.o.Health.Status() {
		id := s.ID
		if states {
			gauge(ch, c.upInfo, 1, id, s.Addr.String(), transport.UDP.String())
			gauge(ch, c.upUp, b2f(s.Health == balancer.Up), id)
			for _, a := range []balancer.AdminState{balancer.Enabled, balancer.Draining, balancer.Disabled} {
				gauge(ch, c.upAdmin, b2f(s.Admin == a), id, a.String())
			}
		}
		counter(ch, c.probes, s.ProbesSent, id)
		counter(ch, c.probeFailures, s.ProbeTimeouts, id, "timeout")
		counter(ch, c.probeFailures, s.ProbeBadCode, id, "bad_code")
		counter(ch, c.probeFailures, s.SendErrors, id, "send_error")
		counter(ch, c.passive, s.Passive503, id)
		counter(ch, c.trafficChecks, s.TrafficOK, id)
		h := &s.RTTHist
		cum := h.Cumulative()
		buckets := make(map[float64]uint64, len(bounds))
		for i, b := range bounds {
			buckets[b.Seconds()] = cum[i]
		}
		ch <- prometheus.MustNewConstHistogram(c.rtt, h.Count, h.Sum.Seconds(), buckets, id)
		if s.RTTAvg > 0 {
			gauge(ch, c.srtt, s.RTTAvg.Seconds(), id)
		}
		if !s.HealthSince.IsZero() {
			gauge(ch, c.healthChanged, float64(s.HealthSince.UnixNano())/1e9, id)
		}
	}
	counter(ch, c.droppedReplies, c.o.Health.DroppedReplies())
}

func (c *Collector) collectReloads(ch chan<- prometheus.Metric) {
	r := c.o.Reloads.Snapshot()
	counter(ch, c.reloads, r.Success, "success")
	counter(ch, c.reloads, r.Failure, "failure")
	gauge(ch, c.reloadOK, b2f(!r.LastFailed))
	if !r.LastSuccess.IsZero() {
		gauge(ch, c.reloadTime, float64(r.LastSuccess.UnixNano())/1e9)
	}
	if r.Hash != "" {
		gauge(ch, c.configInfo, 1, r.Hash)
	}
}
