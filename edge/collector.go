package edge

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports the Guard's counters (see the README's metrics list).
type Collector struct {
	g                                             *Guard
	dropped, would, replies, entries, capacity    *prometheus.Desc
	evictions, bansActive, bansAdded, bansRefused *prometheus.Desc
	bansExpired, wouldBan, blocklist, admitted    *prometheus.Desc
}

// NewCollector returns the collector of g's metrics.
func NewCollector(g *Guard) *Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("viaduct_edge_"+name, help, labels, nil)
	}
	return &Collector{
		g:           g,
		dropped:     d("dropped_total", "Messages the edge dropped (or, for reason rate, answered 503), by reason and rule.", "reason", "rule"),
		would:       d("would_drop_total", "Messages a rule in log_only mode would have dropped, by reason and rule.", "reason", "rule"),
		replies:     d("replies_total", "Requests over a limit answered 503 with Retry-After (limits.reply 503, from limits.reply_networks)."),
		admitted:    d("admitted_total", "Messages the edge passed on to the core."),
		entries:     d("table_entries", "Sources in the rate-limit table."),
		capacity:    d("table_capacity", "Size of the rate-limit table, fixed at start (limits.table_size rounded up)."),
		evictions:   d("table_evictions_total", "Entries of the rate-limit table evicted for a new source (least recently seen of its set)."),
		bansActive:  d("bans_active", "Bans in force, by origin (manual, rate, scanner).", "origin"),
		bansAdded:   d("bans_added_total", "Bans added, by origin (an existing ban renewed counts again).", "origin"),
		bansRefused: d("bans_refused_total", "Bans refused because the list held bans.max, by origin.", "origin"),
		bansExpired: d("bans_expired_total", "Bans removed at their expiry."),
		wouldBan:    d("would_ban_total", "Bans that limits or bans in log_only mode would have added, by origin.", "origin"),
		blocklist:   d("blocklist_prefixes", "Prefixes loaded from access.blocklist_file."),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.dropped, c.would, c.replies, c.admitted, c.entries, c.capacity, c.evictions,
		c.bansActive, c.bansAdded, c.bansRefused, c.bansExpired, c.wouldBan, c.blocklist} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.g.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	for _, r := range s.Drops {
		counter(c.dropped, r.Dropped, r.Reason, r.Rule)
		counter(c.would, r.WouldDrop, r.Reason, r.Rule)
	}
	counter(c.replies, s.Replies)
	counter(c.admitted, s.Admitted)
	gauge(c.entries, s.TableEntries)
	gauge(c.capacity, int64(s.TableCapacity))
	counter(c.evictions, s.Evictions)
	for o := range numOrigins {
		name := o.String()
		gauge(c.bansActive, int64(s.BansActive[o]), name)
		counter(c.bansAdded, s.BansAdded[o], name)
		counter(c.bansRefused, s.BansRefused[o], name)
		counter(c.wouldBan, s.WouldBan[o], name)
	}
	counter(c.bansExpired, s.BansExpired)
	gauge(c.blocklist, s.BlocklistPrefixes)
}
