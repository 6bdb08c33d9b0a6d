// Package testenv holds the test-environment rules shared by Viaduct's
// packages, so that they are stated once.
package testenv

import (
	"bytes"
	"os"
	"os/exec"
	"sync"
	"testing"
)

// Sipp returns the path of the sipp binary (Debian package sip-tester).
// Without it the test is skipped on a developer's machine, and fails when
// CI=true, where .ci/run installs it and every end-to-end test must run.
func Sipp(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("sipp")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("sipp is required when CI=true (apt-get install sip-tester): %v", err)
		}
		t.Skip("sipp not installed (apt-get install sip-tester)")
	}
	return p
}

// SyncBuffer is a bytes.Buffer that several goroutines may write and read
// at once: a test hands it to code that logs from its own goroutines and
// reads it from the test.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p to the buffer.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
