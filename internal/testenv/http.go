package testenv

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// HTTPDo sends method url with body (none when empty) and, unless token is
// empty, the header "Authorization: Bearer token", and returns the status
// and the body of the response. A request that cannot be sent or a body
// that cannot be read fails the test.
func HTTPDo(t testing.TB, method, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}
