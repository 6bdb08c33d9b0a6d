package load

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/internal/testenv"
)

// freeUDPPort returns a port that was free on 127.0.0.1 a moment ago.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// sippStats returns the last line of a sipp -trace_stat CSV as a map from
// column name to value.
func sippStats(t *testing.T, dir string) map[string]string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.csv"))
	if len(files) == 0 {
		t.Fatal("sipp wrote no statistics file")
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) < 2 {
		t.Fatalf("sipp statistics file has %d lines", len(lines))
	}
	names := strings.Split(lines[0], ";")
	vals := strings.Split(lines[len(lines)-1], ";")
	m := map[string]string{}
	for i, n := range names {
		if i < len(vals) {
			m[n] = vals[i]
		}
	}
	return m
}

// TestInteropUACAgainstSippUAS runs 200 calls at 100/s from the UAC to
// "sipp -sn uas".
func TestInteropUACAgainstSippUAS(t *testing.T) {
	sipp := testenv.Sipp(t)
	const calls = 200
	port := freeUDPPort(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sipp, "-sn", "uas", "-i", "127.0.0.1", "-p", strconv.Itoa(port),
		"-m", strconv.Itoa(calls), "-timeout", "30s", "-nostdin", "-trace_stat", "-fd", "1")
	cmd.Dir = dir
	testenv.StartLogged(t, cmd, filepath.Join(dir, "screen.log"))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	time.Sleep(300 * time.Millisecond) // let sipp bind

	u := startUAC(t, UACConfig{Target: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)),
		Sources: 2, Timeout: 10 * time.Second})
	r, err := u.Run(ctx, RunOptions{Rate: 100, Total: calls, Drain: 15 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c := &r.Counts
	if c.Started != calls || c.Completed != calls || c.Failed != 0 {
		t.Errorf("uac: started %d completed %d failed %d (%v); unexpected %d, parse errors %d",
			c.Started, c.Completed, c.Failed, c.FailedBy(), c.Unexpected, c.ParseErrors)
	}
	select {
	case err = <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "screen.log"))
		t.Fatalf("sipp uas: %v\n%s", err, tail(log, 3000))
	}
	st := sippStats(t, dir)
	if st["SuccessfulCall(C)"] != strconv.Itoa(calls) || st["FailedCall(C)"] != "0" {
		t.Fatalf("sipp uas counted %s successful and %s failed calls", st["SuccessfulCall(C)"], st["FailedCall(C)"])
	}
}

// TestInteropSippUACAgainstUAS runs "sipp -sn uac" (200 calls at 100/s)
// against the UAS.
func TestInteropSippUACAgainstUAS(t *testing.T) {
	sipp := testenv.Sipp(t)
	const calls = 200
	s := startUAS(t, UASConfig{Workers: 2})
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sipp, "-sn", "uac", "-i", "127.0.0.1", "-p", strconv.Itoa(freeUDPPort(t)),
		"-r", "100", "-m", strconv.Itoa(calls), "-timeout", "30s", "-timeout_error", "-nostdin",
		"-trace_stat", "-fd", "1", s.Addr().String())
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ctx.Err() != nil {
			t.Fatalf("sipp uac: %v\n%s", err, tail(out, 3000))
		}
		t.Fatalf("sipp uac exit status %d (some calls failed)\n%s", ee.ExitCode(), tail(out, 3000))
	}
	st := sippStats(t, dir)
	if st["SuccessfulCall(C)"] != strconv.Itoa(calls) || st["FailedCall(C)"] != "0" {
		t.Fatalf("sipp uac counted %s successful and %s failed calls", st["SuccessfulCall(C)"], st["FailedCall(C)"])
	}
	var c UASCounts
	s.Counts(&c)
	if c.Invite != calls || c.Ack != calls || c.Bye != calls || c.ParseErrors != 0 {
		t.Fatalf("uas saw INVITE %d ACK %d BYE %d, %d unparsable", c.Invite, c.Ack, c.Bye, c.ParseErrors)
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
