package metrics

import (
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewRegistry returns a registry holding c, the Go runtime (go_*) and
// process (process_*) collectors, and the collectors of other rooms (more).
func NewRegistry(c prometheus.Collector, more ...prometheus.Collector) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	for _, col := range append([]prometheus.Collector{
		c,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}, more...) {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("metrics: registering collector: %w", err)
		}
	}
	return reg, nil
}

// Handler returns the HTTP handler for /metrics serving g in the Prometheus
// text format (or OpenMetrics when the scraper asks for it). Errors while
// gathering are logged to logger (nil: discarded) and the metrics gathered
// are still served.
func Handler(g prometheus.Gatherer, logger *slog.Logger) http.Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:          slogPrinter{logger},
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: true,
	})
}

// slogPrinter adapts a slog.Logger to promhttp.Logger.
type slogPrinter struct{ l *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.l.Error("metrics: " + fmt.Sprint(v...)) }
