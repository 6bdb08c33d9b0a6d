package httpjson

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestAnswers(t *testing.T) {
	for _, tc := range []struct {
		name     string
		write    func(http.ResponseWriter)
		code     int
		wantBody string
	}{
		{"indented value", func(w http.ResponseWriter) { Write(w, http.StatusCreated, map[string]int{"a": 1}) },
			http.StatusCreated, "{\n  \"a\": 1\n}\n"},
		{"unencodable value", func(w http.ResponseWriter) { Write(w, http.StatusOK, func() {}) },
			http.StatusInternalServerError, "{\"error\":\"encoding JSON: json: unsupported type: func()\"}\n"},
		{"error", func(w http.ResponseWriter) { Error(w, http.StatusNotFound, `no "x"`) },
			http.StatusNotFound, "{\"error\":\"no \\\"x\\\"\"}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			tc.write(rec)
			if rec.Code != tc.code {
				t.Errorf("code %d, want %d", rec.Code, tc.code)
			}
			if got := rec.Body.String(); got != tc.wantBody {
				t.Errorf("body %q, want %q", got, tc.wantBody)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q", cc)
			}
		})
	}
}
