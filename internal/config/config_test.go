package config

import (
	"errors"
	"testing"
)

func TestFieldError(t *testing.T) {
	err := Errorf("upstreams[1].weight", "must be 1..%d, got %d", 1000, 0)
	if got := err.Error(); got != "upstreams[1].weight: must be 1..1000, got 0" {
		t.Errorf("Error() = %q", got)
	}
}

func TestPrefix(t *testing.T) {
	if Prefix("health", nil) != nil {
		t.Error("Prefix of nil is not nil")
	}
	var fe *FieldError
	err := Prefix("upstream_health[\"a\"]", Prefix("passive_503", Errorf("count", "bad")))
	if !errors.As(err, &fe) || fe.Field != `upstream_health["a"].passive_503.count` || fe.Reason != "bad" {
		t.Errorf("nested Prefix = %#v", err)
	}
	plain := errors.New("disk on fire")
	err = Prefix("admin", plain)
	if !errors.Is(err, plain) || errors.As(err, &fe) || err.Error() != "admin: disk on fire" {
		t.Errorf("Prefix of a plain error = %v", err)
	}
}
