// Package kubernetes checks Viaduct's Kubernetes manifests offline: it
// renders the Kustomize overlays in this directory (base/, overlays/*)
// with the Kustomize library, decodes every object strictly into the
// Kubernetes API types (an unknown or duplicate field is an error), and
// checks the invariants that keep the manifests and Viaduct's
// configuration in step: the readiness probe reaches /readyz on the admin
// address, the grace period outlasts shutdown_drain, the secret is mounted
// where the configuration reads it, and so on (Checks).
//
// It is a module of its own so that the main module keeps its short list
// of dependencies; the tests also run `viaduct --check` over the rendered
// configuration.
package kubernetes
