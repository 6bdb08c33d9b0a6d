package capture

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a message is not captured or not delivered.
const (
	dropRingFull  = iota // the worker's ring was full
	dropTooLarge         // the HEP frame would exceed MaxFrame
	dropCollector        // the collector refused it or could not be reached
	numDrops
)

var dropNames = [numDrops]string{"ring_full", "too_large", "collector"}

// tapStats are one tap's counters, written by its worker alone.
type tapStats struct {
	captured, capturedBytes atomic.Uint64
	drops, dropBytes        [numDrops - 1]atomic.Uint64 // ring_full, too_large
	_                       [64]byte
}

func (s *tapStats) drop(reason, bytes int) {
	s.dropBytes[reason].Add(uint64(bytes))
	s.drops[reason].Add(1)
}

// senderStats are the sender's counters.
type senderStats struct {
	sent, sentBytes       atomic.Uint64
	dropped, droppedBytes atomic.Uint64 // dropCollector
	collectorErrors       atomic.Uint64
}

// Stats are the capture's counters since New.
type Stats struct {
	// Captured and CapturedBytes count the messages copied into a ring
	// (bytes of SIP).
	Captured, CapturedBytes uint64
	// Sent and SentBytes count the HEP frames handed to the kernel for
	// the collector (bytes of HEP).
	Sent, SentBytes uint64
	// Dropped and DroppedBytes count the messages lost, by reason:
	// "ring_full", "too_large" (not captured) and "collector" (captured,
	// not delivered), in bytes of SIP or HEP.
	Dropped, DroppedBytes map[string]uint64
	// CollectorErrors counts failed sends and connections to the
	// collector.
	CollectorErrors uint64
	// TracesActive is the number of traces armed.
	TracesActive int
}

// Stats returns the counters.
func (c *Capture) Stats() Stats {
	s := Stats{Dropped: map[string]uint64{}, DroppedBytes: map[string]uint64{}}
	for _, t := range *c.taps.Load() {
		s.Captured += t.stats.captured.Load()
		s.CapturedBytes += t.stats.capturedBytes.Load()
		for r := range t.stats.drops {
			s.Dropped[dropNames[r]] += t.stats.drops[r].Load()
			s.DroppedBytes[dropNames[r]] += t.stats.dropBytes[r].Load()
		}
	}
	s.Dropped[dropNames[dropCollector]] = c.sent.dropped.Load()
	s.DroppedBytes[dropNames[dropCollector]] = c.sent.droppedBytes.Load()
	s.Sent, s.SentBytes = c.sent.sent.Load(), c.sent.sentBytes.Load()
	s.CollectorErrors = c.sent.collectorErrors.Load()
	s.TracesActive = c.traces.Active()
	return s
}

// collector is the Prometheus view of a Capture.
type collector struct {
	c                             *Capture
	captured, capturedBytes       *prometheus.Desc
	sent, sentBytes               *prometheus.Desc
	dropped, droppedBytes         *prometheus.Desc
	collectorErrors, tracesActive *prometheus.Desc
}

// Collector returns the capture's metrics as a prometheus.Collector
// (viaduct_capture_*).
func (c *Capture) Collector() prometheus.Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("viaduct_capture_"+name, help, labels, nil)
	}
	return &collector{c: c,
		captured:        d("captured_messages_total", "Messages copied into a capture ring (for the HEP collector or a trace)."),
		capturedBytes:   d("captured_bytes_total", "Bytes of SIP copied into a capture ring."),
		sent:            d("sent_messages_total", "HEP frames sent to the collector."),
		sentBytes:       d("sent_bytes_total", "Bytes of HEP sent to the collector."),
		dropped:         d("dropped_messages_total", "Messages not captured (ring_full, too_large) or not delivered to the collector (collector).", "reason"),
		droppedBytes:    d("dropped_bytes_total", "Bytes of the messages counted by viaduct_capture_dropped_messages_total.", "reason"),
		collectorErrors: d("collector_errors_total", "Failed sends and connection attempts to the HEP collector."),
		tracesActive:    d("traces_active", "Per-call traces armed through the admin API."),
	}
}

func (m *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.captured, m.capturedBytes, m.sent, m.sentBytes, m.dropped, m.droppedBytes, m.collectorErrors, m.tracesActive} {
		ch <- d
	}
}

func (m *collector) Collect(ch chan<- prometheus.Metric) {
	s := m.c.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(m.captured, s.Captured)
	counter(m.capturedBytes, s.CapturedBytes)
	counter(m.sent, s.Sent)
	counter(m.sentBytes, s.SentBytes)
	for _, r := range dropNames {
		counter(m.dropped, s.Dropped[r], r)
		counter(m.droppedBytes, s.DroppedBytes[r], r)
	}
	counter(m.collectorErrors, s.CollectorErrors)
	ch <- prometheus.MustNewConstMetric(m.tracesActive, prometheus.GaugeValue, float64(s.TracesActive))
}
