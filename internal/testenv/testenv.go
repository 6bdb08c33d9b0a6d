// Package testenv holds the test-environment rules shared by Viaduct's
// packages, so that they are stated once.
package testenv

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Sipp returns the path of the sipp binary (Debian package sip-tester).
// Without it the test is skipped on a developer's machine, and fails when
// CI=true, where .ci/run installs it and every end-to-end test must run.
func Sipp(t testing.TB) string {
	t.Helper()
	return requireTool(t, "sipp", "sip-tester")
}

// Kamailio returns the path of the kamailio binary (Debian package
// kamailio) and the directory of its modules (for its -L option; empty when
// none of the usual places holds them, and kamailio's built-in default
// applies). Without kamailio the test is skipped on a developer's machine,
// and fails when CI=true, where .ci/run installs it.
func Kamailio(t testing.TB) (bin, modules string) {
	t.Helper()
	bin = requireTool(t, "kamailio", "kamailio")
	for _, pattern := range []string{
		"/usr/lib/*/kamailio/modules", // Debian and Ubuntu (multiarch)
		"/usr/lib/kamailio/modules",
		"/usr/lib64/kamailio/modules",
		"/usr/local/lib/kamailio/modules",
		"/usr/local/lib64/kamailio/modules",
	} {
		dirs, _ := filepath.Glob(pattern)
		for _, d := range dirs {
			if _, err := os.Stat(filepath.Join(d, "tm.so")); err == nil {
				return bin, d
			}
		}
	}
	return bin, ""
}

// KamailioModule returns the path of Kamailio's module file name (tls.so,
// say) in modules, the directory Kamailio returned, which Debian package
// pkg installs (kamailio-tls-modules). Without it the test is skipped on a
// developer's machine, and fails when CI=true, where .ci/run installs it.
func KamailioModule(t testing.TB, modules, name, pkg string) string {
	t.Helper()
	p := filepath.Join(modules, name)
	if _, err := os.Stat(p); modules == "" || err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("kamailio module %s is required when CI=true (apt-get install %s); modules directory %q", name, pkg, modules)
		}
		t.Skipf("kamailio module %s not installed (apt-get install %s)", name, pkg)
	}
	return p
}

// Sngrep returns the path of the sngrep binary (Debian package sngrep,
// built with HEP support: its -L flag listens for HEP), skipped or failed
// like Sipp.
func Sngrep(t testing.TB) string {
	t.Helper()
	return requireTool(t, "sngrep", "sngrep")
}

// requireTool returns the path of the binary name (Debian package pkg):
// without it the test is skipped, or fails when CI=true.
func requireTool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required when CI=true (apt-get install %s): %v", name, pkg, err)
		}
		t.Skipf("%s not installed (apt-get install %s)", name, pkg)
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

// StartLogged starts cmd with its standard output and error going to a
// new file at path (a tool's screen, kept for a failing test's reader),
// which is closed when the test ends. A failure to start fails the test.
func StartLogged(t testing.TB, cmd *exec.Cmd, path string) {
	t.Helper()
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
}

// WaitFor polls cond every 5 ms until it holds, failing the test with what
// it waited for once limit has passed.
func WaitFor(t testing.TB, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
	}
}
