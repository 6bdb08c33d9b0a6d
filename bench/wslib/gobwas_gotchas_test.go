package wslib

import (
	"errors"
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

// upgradeFrom runs u on req fed from memory and returns the response
// written, the error and the request bytes left unread.
func upgradeFrom(u ws.Upgrader, req []byte) (resp string, left int, err error) {
	rw := &memRW{}
	rw.reset(req)
	_, err = u.Upgrade(rw)
	return rw.w.String(), rw.r.Len(), err
}

// viaductUpgrader returns a fresh checker's upgrader.
func viaductUpgrader() ws.Upgrader {
	return newHandshakeChecker().upgrader()
}

// TestGobwasPartialRequest: Upgrade reads until the blank line; on a
// request cut short it fails with the reader's error and writes nothing, so
// a non-blocking transport must buffer the whole head itself first.
func TestGobwasPartialRequest(t *testing.T) {
	resp, _, err := upgradeFrom(viaductUpgrader(), chromeRequestBytes[:len(chromeRequest)/2])
	if err == nil || resp != "" {
		t.Fatalf("partial request: err=%v resp=%q, want an error and no response", err, resp)
	}
	t.Logf("partial request: %v, nothing written", err)
}

// TestGobwasPipelinedFrame: Upgrade reads through a pooled 4 KiB
// bufio.Reader, so bytes sent right after the request (a first frame) are
// consumed and lost; feed it exactly the request head.
func TestGobwasPipelinedFrame(t *testing.T) {
	req := append(append([]byte(nil), chromeRequest...), clientFrame(sipInvite)...)
	resp, left, err := upgradeFrom(viaductUpgrader(), req)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkUpgradeResponse(resp); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Fatalf("%d bytes left unread, expected the frame to be swallowed", left)
	}
	t.Logf("frame of %d bytes sent with the request was swallowed", len(req)-len(chromeRequest))
}

// TestGobwasNoHeaderLimit: there is no limit on the request head size (a
// header line longer than the buffer is appended to); Viaduct must cap it.
func TestGobwasNoHeaderLimit(t *testing.T) {
	cookie := "Cookie: a=" + strings.Repeat("x", 1<<20) + "\r\n"
	req := strings.Replace(chromeRequest, "Pragma:", cookie+"Pragma:", 1)
	resp, _, err := upgradeFrom(viaductUpgrader(), []byte(req))
	if err != nil {
		t.Fatal(err)
	}
	if err := checkUpgradeResponse(resp); err != nil {
		t.Fatal(err)
	}
	t.Logf("a %d-byte request head was accepted", len(req))
}

// TestGobwasDeflateOffer: without Upgrader.Negotiate the
// permessage-deflate offer is ignored and no extension is answered.
func TestGobwasDeflateOffer(t *testing.T) {
	rw := &memRW{}
	rw.reset(chromeRequestBytes)
	u := viaductUpgrader()
	hs, err := u.Upgrade(rw)
	if err != nil {
		t.Fatal(err)
	}
	if len(hs.Extensions) != 0 || hs.Protocol != subprotocol {
		t.Fatalf("handshake %+v, want sip and no extension", hs)
	}
	if err := checkUpgradeResponse(rw.w.String()); err != nil {
		t.Fatal(err)
	}
}

// TestGobwasMissingSubprotocol: Protocol only selects; a request without
// sip is upgraded with no subprotocol unless OnBeforeUpgrade refuses it.
func TestGobwasMissingSubprotocol(t *testing.T) {
	req := []byte(strings.Replace(chromeRequest, "Sec-WebSocket-Protocol: sip\r\n", "", 1))
	plain := ws.Upgrader{Protocol: func(p []byte) bool { return string(p) == subprotocol }}
	resp, _, err := upgradeFrom(plain, req)
	if err != nil || !strings.HasPrefix(resp, "HTTP/1.1 101 ") {
		t.Fatalf("Protocol alone: err=%v resp=%q, expected a 101", err, resp)
	}
	resp, _, err = upgradeFrom(viaductUpgrader(), req)
	if !errors.Is(err, errNoSIP) || !strings.HasPrefix(resp, "HTTP/1.1 400 ") {
		t.Fatalf("with OnBeforeUpgrade: err=%v resp=%q, expected 400", err, resp)
	}
}

// TestGobwasHookErrors: an error returned by a hook answers 500 unless it is
// a ws.RejectConnectionError with a status.
func TestGobwasHookErrors(t *testing.T) {
	req := []byte(strings.Replace(chromeRequest, allowedOrigin, "https://evil.example.net", 1))
	resp, _, err := upgradeFrom(viaductUpgrader(), req)
	if !errors.Is(err, errBadOrigin) || !strings.HasPrefix(resp, "HTTP/1.1 403 ") {
		t.Fatalf("rejection: err=%v resp=%q, expected 403", err, resp)
	}
	plain := ws.Upgrader{OnHeader: func(k, v []byte) error { return errors.New("no") }}
	resp, _, _ = upgradeFrom(plain, chromeRequestBytes)
	if !strings.HasPrefix(resp, "HTTP/1.1 500 ") {
		t.Fatalf("plain error: resp=%q, expected 500", resp)
	}
}

// TestGobwasCanonicalKeys: OnHeader gets canonical keys, so a lower-case
// "origin:" is still checked as Origin.
func TestGobwasCanonicalKeys(t *testing.T) {
	req := []byte(strings.Replace(chromeRequest, "Origin:", "origin:", 1))
	resp, _, err := upgradeFrom(viaductUpgrader(), req)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkUpgradeResponse(resp); err != nil {
		t.Fatal(err)
	}
}
