package httpjson

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestWriteIndentsAndMarksUncached(t *testing.T) {
	rec := httptest.NewRecorder()
	Write(rec, http.StatusCreated, map[string]int{"a": 1})
	if rec.Code != http.StatusCreated {
		t.Fatalf("code %d, want 201", rec.Code)
	}
	if got, want := rec.Body.String(), "{\n  \"a\": 1\n}\n"; got != want {
		t.Fatalf("body %q, want %q", got, want)
	}
	assertHeaders(t, rec)
}

func TestWriteUnencodableAnswers500(t *testing.T) {
	rec := httptest.NewRecorder()
	Write(rec, http.StatusOK, func() {})
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("code %d, want 500", rec.Code)
	}
	if got, want := rec.Body.String(), "{\"error\":\"encoding JSON: json: unsupported type: func()\"}\n"; got != want {
		t.Fatalf("body %q, want %q", got, want)
	}
	assertHeaders(t, rec)
}

func TestErrorBody(t *testing.T) {
	rec := httptest.NewRecorder()
	Error(rec, http.StatusNotFound, `no "x"`)
	if rec.Code != http.StatusNotFound {
		t.Fatalf("code %d, want 404", rec.Code)
	}
	if got, want := rec.Body.String(), "{\"error\":\"no \\\"x\\\"\"}\n"; got != want {
		t.Fatalf("body %q, want %q", got, want)
	}
	assertHeaders(t, rec)
}

func assertHeaders(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q", cc)
	}
}
