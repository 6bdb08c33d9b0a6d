// Package config holds what every configuration block of Viaduct shares:
// FieldError, the error that names the bad key. Each feature parses and
// validates its own block (fastpath.Config, health.Settings, the balancer's
// targets) and reports with it; cmd/viaduct puts the block's path in front
// with Prefix. It imports nothing of Viaduct's.
package config

import (
	"errors"
	"fmt"
)

// FieldError reports an invalid configuration field: Field is its YAML key,
// with the path of the blocks above it and an index for list entries
// ("upstreams[1].weight", "health.timeout"), and Reason says why.
type FieldError struct {
	Field  string
	Reason string
}

// Error implements the error interface: "FIELD: REASON".
func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Errorf returns a *FieldError for field with the formatted reason.
func Errorf(field, format string, a ...any) *FieldError {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, a...)}
}

// Prefix puts the path of the block where a field was found in front of
// the field of a *FieldError: Prefix("health", err) turns "timeout: ..."
// into "health.timeout: ...". Another error is wrapped as "prefix: err";
// nil stays nil.
func Prefix(prefix string, err error) error {
	if err == nil {
		return nil
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		return &FieldError{Field: prefix + "." + fe.Field, Reason: fe.Reason}
	}
	return fmt.Errorf("%s: %w", prefix, err)
}
