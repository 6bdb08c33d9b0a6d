// Package httpjson writes the JSON answers of Viaduct's HTTP APIs (admin/
// and the rooms that hang their routes on it, such as edge/): indented
// bodies ending in a newline, typed application/json and never cached.
package httpjson

import (
	"encoding/json"
	"net/http"
)

// Write answers with status code and v as indented JSON. A value that cannot
// be encoded answers 500 with an Error body instead.
func Write(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		Error(w, http.StatusInternalServerError, "encoding JSON: "+err.Error())
		return
	}
	writeBody(w, code, b)
}

// Error answers with status code and the body {"error": msg}.
func Error(w http.ResponseWriter, code int, msg string) {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	writeBody(w, code, b)
}

func writeBody(w http.ResponseWriter, code int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}
