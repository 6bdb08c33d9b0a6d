package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// DefaultListen is the admin address used when the configuration does not
// name one: loopback only.
const DefaultListen = "127.0.0.1:9090"

// Disabled reports whether an admin listen setting switches the admin API
// off: the empty string or "off" (any case), as in `--admin-listen ""` or
// `admin: {listen: off}`.
func Disabled(listen string) bool {
	s := strings.TrimSpace(listen)
	return s == "" || strings.EqualFold(s, "off")
}

// IsLoopback reports whether addr ("host:port") binds to loopback only: an
// IP in 127.0.0.0/8 or ::1, or the name localhost. An empty host (":9090")
// binds every interface and is not loopback.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// CheckListen validates an admin address and the token policy: a
// non-loopback address requires a token, since the API can drain and
// disable upstreams. It returns a plain error (the caller names the field).
func CheckListen(addr, token string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", addr, err)
	}
	if port == "" {
		return fmt.Errorf("%q has no port", addr)
	}
	if host != "" && !strings.EqualFold(host, "localhost") {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("%q: the host must be an IP address or localhost", addr)
		}
	}
	if !IsLoopback(addr) && token == "" {
		return fmt.Errorf("%s is not a loopback address: set a bearer token (admin.token or admin.token_file) or bind to 127.0.0.1", addr)
	}
	return nil
}

// Listen checks addr with CheckListen and opens a TCP listener on it.
func Listen(addr, token string) (net.Listener, error) {
	if err := CheckListen(addr, token); err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	return ln, nil
}

// Server serves a Handler on a listener with timeouts fit for an admin
// API. Stop it with Shutdown.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan error
}

// Serve starts serving h on ln in a goroutine. Errors other than the
// listener closing are logged to logger (nil: discarded).
func Serve(ln net.Listener, h http.Handler, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       60 * time.Second,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		},
		ln:   ln,
		done: make(chan error, 1),
	}
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		if err != nil {
			logger.Error("admin server stopped", "err", err)
		}
		s.done <- err
	}()
	return s
}

// Addr returns the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Shutdown stops accepting connections and waits, up to ctx, for requests
// in progress to finish.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if e := <-s.done; err == nil {
		err = e
	}
	if err != nil {
		return fmt.Errorf("admin: shutdown: %w", err)
	}
	return nil
}
