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
	"github.com/viaduct-sip/viaduct/transport"
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

// freeTCPPort returns a port that was free for tcp on 127.0.0.1 a moment
// ago.
func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestInteropStreamUACAgainstSippUAS runs 100 calls from the UAC over tcp
// to "sipp -sn uas": on one shared connection (-t t1) and on a connection
// per call (-t tn). SIPp's UAS ends each call with a 4s pause and counts a
// call whose connection closes during it as failed (FailedTcpClosed),
// which with a connection per call is every call the UAC ended: those are
// counted with the successes, every other failure must be 0.
func TestInteropStreamUACAgainstSippUAS(t *testing.T) {
	sipp := testenv.Sipp(t)
	const calls = 100
	for _, tc := range []struct {
		mode Connections
		flag string
	}{{ConnShared, "t1"}, {ConnPerCall, "tn"}} {
		t.Run(tc.flag, func(t *testing.T) {
			port := freeTCPPort(t)
			dir := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, sipp, "-sn", "uas", "-t", tc.flag, "-max_socket", "1000", "-i", "127.0.0.1",
				"-p", strconv.Itoa(port), "-m", strconv.Itoa(calls), "-timeout", "30s", "-nostdin", "-trace_stat", "-fd", "1")
			cmd.Dir = dir
			testenv.StartLogged(t, cmd, filepath.Join(dir, "screen.log"))
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			target := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
			var u *UAC
			for deadline := time.Now().Add(5 * time.Second); ; { // until sipp listens
				var err error
				if u, err = NewUAC(UACConfig{Target: target, Transport: transport.TCP, Connections: tc.mode, Sources: 1,
					Timeout: 10 * time.Second}); err == nil {
					break
				} else if time.Now().After(deadline) {
					t.Fatal(err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			defer u.Close()
			r, err := u.Run(ctx, RunOptions{Rate: 100, Total: calls, Drain: 15 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if c := &r.Counts; c.Started != calls || c.Completed != calls || c.Failed != 0 {
				t.Errorf("uac: started %d completed %d failed %d (%v); unexpected %d, parse errors %d",
					c.Started, c.Completed, c.Failed, c.FailedBy(), c.Unexpected, c.ParseErrors)
			}
			if tc.mode == ConnShared {
				u.Close() // sipp's last call ends when its pause does
			}
			select {
			case err = <-done:
			case <-ctx.Done():
				err = ctx.Err()
			}
			st := sippStats(t, dir)
			ok, _ := strconv.Atoi(st["SuccessfulCall(C)"])
			failed, _ := strconv.Atoi(st["FailedCall(C)"])
			closed, _ := strconv.Atoi(st["FailedTcpClosed(C)"])
			if ok+closed != calls || failed != closed || (tc.mode == ConnShared && err != nil) {
				log, _ := os.ReadFile(filepath.Join(dir, "screen.log"))
				t.Fatalf("sipp uas -t %s: %d successful, %d failed of which %d for the tcp connection closing (exit: %v)\n%s",
					tc.flag, ok, failed, closed, err, tail(log, 3000))
			}
		})
	}
}

// TestInteropSippStreamUACAgainstUAS runs "sipp -sn uac" over tcp (100
// calls at 100/s) against the tcp UAS, on one connection (-t t1) and on
// a connection per call (-t tn).
func TestInteropSippStreamUACAgainstUAS(t *testing.T) {
	sipp := testenv.Sipp(t)
	const calls = 100
	for _, flag := range []string{"t1", "tn"} {
		t.Run(flag, func(t *testing.T) {
			s := startUAS(t, UASConfig{Transport: transport.TCP})
			dir := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, sipp, "-sn", "uac", "-t", flag, "-max_socket", "1000", "-i", "127.0.0.1",
				"-p", strconv.Itoa(freeTCPPort(t)), "-r", "100", "-m", strconv.Itoa(calls), "-timeout", "30s", "-timeout_error",
				"-nostdin", "-trace_stat", "-fd", "1", s.Addr().String())
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("sipp uac -t %s: %v\n%s", flag, err, tail(out, 3000))
			}
			st := sippStats(t, dir)
			if st["SuccessfulCall(C)"] != strconv.Itoa(calls) || st["FailedCall(C)"] != "0" {
				t.Fatalf("sipp uac counted %s successful and %s failed calls", st["SuccessfulCall(C)"], st["FailedCall(C)"])
			}
			var c UASCounts
			s.Counts(&c)
			wantConns := uint64(1)
			if flag == "tn" {
				wantConns = calls
			}
			if c.Invite != calls || c.Ack != calls || c.Bye != calls || c.ParseErrors != 0 || c.Accepted != wantConns {
				t.Fatalf("uas saw INVITE %d ACK %d BYE %d, %d unparsable, %d connections (want %d)", c.Invite, c.Ack, c.Bye,
					c.ParseErrors, c.Accepted, wantConns)
			}
		})
	}
}
