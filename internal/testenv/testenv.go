// Package testenv holds the test-environment rules shared by Viaduct's
// packages, so that they are stated once.
package testenv

import (
	"os"
	"os/exec"
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
