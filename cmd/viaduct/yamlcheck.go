package main

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/viaduct-sip/viaduct/internal/config"
)

// Type errors by YAML path.
//
// yaml.v3 reports a value of the wrong type with its line and Go type
// ("line 5: cannot unmarshal !!int `5` into time.Duration"), and quietly
// truncates a float into an int ("workers: 1.5" gives 1). checkTypes walks
// the document against the Go type it is decoded into and reports each
// such value by its path, as every other configuration error is reported:
//
//	health.interval: want a duration such as 5s, 250ms or 1m30s, got 5 (line 5)
//	listen: must be a list, got the string "127.0.0.1:5060": write listen: ["127.0.0.1:5060"] (line 1)
//
// A scalar where a list belongs is refused rather than taken as a list of
// one: every key has one form, and "a, b" would otherwise read as one bad
// address. (The flags take comma lists.) Unknown and duplicate keys are
// left to the decoder, which names them with their line.

// yamlErrors is the list of type errors checkTypes found, in document
// order; errors.As finds the first *config.FieldError.
type yamlErrors []error

func (e yamlErrors) Error() string {
	s := make([]string, len(e))
	for i, err := range e {
		s[i] = err.Error()
	}
	return strings.Join(s, "; ")
}

func (e yamlErrors) Unwrap() []error { return e }

var (
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
	durationType    = reflect.TypeFor[time.Duration]()
)

// checkTypes returns the type errors of the document n decoded into a
// value of type t, nil if there is none.
func checkTypes(n *yaml.Node, t reflect.Type) error {
	var errs yamlErrors
	if n.Kind == yaml.DocumentNode {
		for _, c := range n.Content {
			checkNode(c, t, "", &errs)
		}
	} else {
		checkNode(n, t, "", &errs)
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

// checkNode appends the type errors of n, at path, decoded into t.
func checkNode(n *yaml.Node, t reflect.Type, path string, errs *yamlErrors) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.ShortTag() == "!!null" && (t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map) {
		return // absent
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	bad := func(format string, a ...any) {
		field := path
		if field == "" {
			field = "the document"
		}
		*errs = append(*errs, &config.FieldError{Field: field, Reason: fmt.Sprintf(format, a...) + fmt.Sprintf(" (line %d)", n.Line)})
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		checkCustom(n, t, path, errs)
		return
	}
	switch {
	case t == durationType:
		var d time.Duration
		if n.Kind != yaml.ScalarNode || n.Decode(&d) != nil {
			bad("want a duration such as 5s, 250ms or 1m30s, got %s", describe(n))
		}
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			bad("must be a mapping (key: value, ...), got %s", describe(n))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if f, ok := fieldByKey(t, n.Content[i].Value); ok {
				checkNode(n.Content[i+1], f.Type, join(path, n.Content[i].Value), errs)
			}
		}
	case t.Kind() == reflect.Map:
		if n.Kind != yaml.MappingNode {
			bad("must be a mapping (key: value, ...), got %s", describe(n))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			checkNode(n.Content[i+1], t.Elem(), fmt.Sprintf("%s[%q]", path, n.Content[i].Value), errs)
		}
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			if n.Kind == yaml.ScalarNode {
				bad("must be a list, got %s: write %s: [%s]", describe(n), lastKey(path), strconv.Quote(n.Value))
			} else {
				bad("must be a list, got %s", describe(n))
			}
			return
		}
		for i, c := range n.Content {
			checkNode(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
		}
	case t.Kind() == reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
			bad("want true or false, got %s", describe(n))
		}
	case isInteger(t.Kind()):
		// yaml.v3 would truncate 1.5 into 1: only an integer will do.
		v := reflect.New(t)
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(v.Interface()) != nil {
			bad("want an integer, got %s", describe(n))
		}
	case t.Kind() == reflect.String:
		if n.Kind != yaml.ScalarNode {
			bad("want a string, got %s", describe(n))
		}
	}
}

// checkCustom checks a value of a type with its own UnmarshalYAML
// (an upstreams entry, the admin section): its own error, prefixed with
// the path, unless the node is a mapping whose fields show where the
// trouble is.
func checkCustom(n *yaml.Node, t reflect.Type, path string, errs *yamlErrors) {
	err := n.Decode(reflect.New(t).Interface())
	if err == nil {
		return
	}
	if n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct {
		before := len(*errs)
		for i := 0; i+1 < len(n.Content); i += 2 {
			if f, ok := fieldByKey(t, n.Content[i].Value); ok {
				checkNode(n.Content[i+1], f.Type, join(path, n.Content[i].Value), errs)
			}
		}
		if len(*errs) > before {
			return
		}
	}
	var te *yaml.TypeError
	msg := err.Error()
	if errors.As(err, &te) {
		msg = strings.Join(te.Errors, "; ")
	}
	*errs = append(*errs, &config.FieldError{Field: path, Reason: msg})
}

// fieldByKey returns the field of struct type t whose yaml tag is key.
func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() {
			continue
		}
		if name == key {
			return f, true
		}
		// An inline struct's keys are its container's (health.Section
		// inlines health.Settings).
		if name == "" && opts == "inline" && f.Type.Kind() == reflect.Struct {
			if g, ok := fieldByKey(f.Type, key); ok {
				return g, true
			}
		}
	}
	return reflect.StructField{}, false
}

func isInteger(k reflect.Kind) bool {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}

// describe names what n holds, for "got ...".
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	switch n.ShortTag() {
	case "!!str":
		return "the string " + strconv.Quote(n.Value)
	case "!!null":
		return "nothing"
	}
	return n.Value
}

// join appends key to the YAML path.
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// lastKey returns the last key of a path: "accept" of "health.accept".
func lastKey(path string) string {
	if i := strings.LastIndexAny(path, ".]"); i >= 0 && path[i] == '.' {
		return path[i+1:]
	}
	return path
}

// writtenKeys returns the path of every mapping key of the document n
// ("workers", "dns", "dns.refresh", "upstream_health[\"a\"].interval").
func writtenKeys(n *yaml.Node) map[string]bool {
	out := map[string]bool{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				p := join(path, n.Content[i].Value)
				out[p] = true
				walk(n.Content[i+1], p)
			}
		}
	}
	walk(n, "")
	return out
}

// checkKeys returns an error naming the line of the first key of the
// mapping n that is not one of keys; where names the mapping ("admin", "an
// upstreams entry"). It is for the sections that decode themselves, which
// the decoder's KnownFields does not reach.
func checkKeys(n *yaml.Node, keys []string, where string) error {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; !slices.Contains(keys, k.Value) {
			return fmt.Errorf("line %d: unknown field %s in %s (want %s)", k.Line, k.Value, where, strings.Join(keys, ", "))
		}
	}
	return nil
}

// hasKey reports whether the mapping n has key.
func hasKey(n *yaml.Node, key string) bool {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return true
		}
	}
	return false
}
