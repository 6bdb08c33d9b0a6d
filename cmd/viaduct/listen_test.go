package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// runUntilStarted runs viaduct with args in the background until the test
// ends, and waits until it logged its start (or exited). It returns the
// log and a function that stops it and returns its exit status.
func runUntilStarted(t *testing.T, args ...string) (*syncBuffer, func() int) {
	t.Helper()
	var log syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, &log) }()
	stop := func() int {
		cancel()
		select {
		case code := <-done:
			done <- code
			return code
		case <-time.After(10 * time.Second):
			t.Fatalf("run did not return after cancel:\n%s", log.String())
			return -1
		}
	}
	t.Cleanup(func() { stop() })
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(log.String(), "fastpath started"); time.Sleep(10 * time.Millisecond) {
		select {
		case code := <-done:
			done <- code
			return &log, stop
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not started after 10 s:\n%s", log.String())
		}
	}
	return &log, stop
}

// A second Viaduct on an address another one serves refuses to start,
// naming the address and reuse_port; with reuse_port on both, both run.
func TestSecondInstanceOnListenAddress(t *testing.T) {
	for _, reuse := range []bool{false, true} {
		addr := freePort(t).String()
		args := []string{"--listen", addr, "--upstream", "127.0.0.1:9", "--workers", "2", "--admin-listen", "off"}
		if reuse {
			args = append(args, "--reuse-port")
		}
		_, stopFirst := runUntilStarted(t, args...)
		log, stopSecond := runUntilStarted(t, args...)
		code := stopSecond()
		switch {
		case !reuse && (code != 1 || !strings.Contains(log.String(), addr+": address already in use") || !strings.Contains(log.String(), "reuse_port: true (--reuse-port)")):
			t.Errorf("second instance without reuse_port: exit %d, want 1 naming %s and reuse_port:\n%s", code, addr, log.String())
		case reuse && (code != 0 || !strings.Contains(log.String(), "fastpath started")):
			t.Errorf("second instance with reuse_port: exit %d, want a start and 0:\n%s", code, log.String())
		}
		if code := stopFirst(); code != 0 {
			t.Errorf("first instance (reuse_port %v): exit %d", reuse, code)
		}
	}
	if code, out := checkRun(t, "listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nreuse_port: true\n"); code != 0 || !strings.Contains(out, " reuse_port=true ") {
		t.Errorf("--check with reuse_port: exit %d:\n%s", code, out)
	}
}
