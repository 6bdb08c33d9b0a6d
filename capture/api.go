package capture

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// The trace endpoints of the admin API, mounted by cmd/viaduct:
//
//	POST   /api/v1/traces            arm: {"call_id": "..."} or {"user": "alice"},
//	                                 with "max_messages" and "duration" ("30s") → 201 and the trace
//	GET    /api/v1/traces            the traces kept (armed and finished)
//	GET    /api/v1/traces/{id}       the messages as text
//	GET    /api/v1/traces/{id}.pcap  the messages as a pcap file (Wireshark, sngrep -I)
//	DELETE /api/v1/traces/{id}       end the trace now (it stays readable)
//
// Bad input gets 400 with the reason, an unknown trace 404, one trace too
// many 429.

// maxTraceBody bounds the body of POST /api/v1/traces.
const maxTraceBody = 4096

// armRequest is the body of POST /api/v1/traces.
type armRequest struct {
	CallID      string `json:"call_id"`
	User        string `json:"user"`
	MaxMessages int    `json:"max_messages"`
	Duration    string `json:"duration"`
}

// ArmHandler serves POST /api/v1/traces.
func (ts *Traces) ArmHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		spec, err := decodeArm(r)
		if err != nil {
			apiError(w, http.StatusBadRequest, err)
			return
		}
		info, err := ts.Arm(spec, time.Now())
		if err != nil {
			apiError(w, statusOf(err), err)
			return
		}
		w.Header().Set("Location", "/api/v1/traces/"+info.ID)
		writeJSON(w, http.StatusCreated, info)
	})
}

// decodeArm reads and checks the body of an arm request (strict JSON: an
// unknown field is an error).
func decodeArm(r *http.Request) (TraceSpec, error) {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxTraceBody+1))
	dec.DisallowUnknownFields()
	var req armRequest
	if err := dec.Decode(&req); err != nil {
		return TraceSpec{}, fmt.Errorf("%w: body: %v (want JSON: call_id or user, max_messages, duration)", ErrTraceInvalid, err)
	}
	if dec.More() {
		return TraceSpec{}, fmt.Errorf("%w: body: one JSON object expected", ErrTraceInvalid)
	}
	spec := TraceSpec{CallID: req.CallID, User: req.User, MaxMessages: req.MaxMessages}
	if req.Duration != "" {
		d, err := time.ParseDuration(req.Duration)
		if err != nil {
			return spec, fmt.Errorf("%w: duration %q: want a Go duration such as 30s or 2m", ErrTraceInvalid, req.Duration)
		}
		if d <= 0 {
			return spec, fmt.Errorf("%w: duration must be positive, got %v", ErrTraceInvalid, d)
		}
		spec.Duration = d
	}
	if req.MaxMessages < 0 {
		return spec, fmt.Errorf("%w: max_messages must be positive, got %d", ErrTraceInvalid, req.MaxMessages)
	}
	return spec, nil
}

// ListHandler serves GET /api/v1/traces.
func (ts *Traces) ListHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"traces": ts.List()})
	})
}

// GetHandler serves GET /api/v1/traces/{id} (text) and
// GET /api/v1/traces/{id}.pcap.
func (ts *Traces) GetHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, pcap := strings.CutSuffix(r.PathValue("id"), ".pcap")
		info, msgs, err := ts.Get(id)
		if err != nil {
			apiError(w, statusOf(err), err)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		if pcap {
			w.Header().Set("Content-Type", "application/vnd.tcpdump.pcap")
			w.Header().Set("Content-Disposition", `attachment; filename="trace-`+info.ID+`.pcap"`)
			WritePcap(w, msgs)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		WriteText(w, info, msgs)
	})
}

// StopHandler serves DELETE /api/v1/traces/{id}.
func (ts *Traces) StopHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info, err := ts.Stop(r.PathValue("id"), time.Now())
		if err != nil {
			apiError(w, statusOf(err), err)
			return
		}
		writeJSON(w, http.StatusOK, info)
	})
}

// statusOf maps a trace error to its HTTP status.
func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrTraceNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrTooManyTraces):
		return http.StatusTooManyRequests
	case errors.Is(err, ErrTraceInvalid):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

func apiError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
