package kubernetes

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// overlays are the variants under overlays/.
var overlays = []string{"hostnetwork", "loadbalancer"}

// testSecrets are the files an operator creates before the first build
// (base/kustomization.yaml), by path under this directory.
var testSecrets = map[string]string{
	"base/secrets/branch-secret": "c2VjcmV0LWZvci10aGUtbWFuaWZlc3QtdGVzdHMtb25seQ==\n",
	"base/secrets/admin-token":   "dG9rZW4tZm9yLXRoZS1tYW5pZmVzdC10ZXN0cw==\n",
}

// renderDocs renders overlays/name from this directory, with testSecrets
// in place, into YAML documents.
func renderDocs(t *testing.T, name string) [][]byte {
	t.Helper()
	root, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	extra := map[string][]byte{}
	for p, v := range testSecrets {
		extra[filepath.Join(root, p)] = []byte(v)
	}
	fsys, err := LoadTree(root, extra)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := Render(fsys, filepath.Join(root, "overlays", name))
	if err != nil {
		t.Fatal(err)
	}
	return docs
}

// render renders and decodes overlays/name.
func render(t *testing.T, name string) *Manifests {
	t.Helper()
	m, err := Decode(renderDocs(t, name))
	if err != nil {
		t.Fatalf("overlay %s: %v", name, err)
	}
	return m
}

// renderInstance renders overlay name and returns it with the effective
// configuration of one of its instances.
func renderInstance(t *testing.T, name string) (*Manifests, *Instance) {
	t.Helper()
	m := render(t, name)
	in, err := m.Instance()
	if err != nil {
		t.Fatalf("overlay %s: %v", name, err)
	}
	return m, in
}

func TestOverlaysKeepInvariants(t *testing.T) {
	for _, name := range overlays {
		t.Run(name, func(t *testing.T) {
			for _, f := range Verify(render(t, name)) {
				t.Errorf("%v", f)
			}
		})
	}
}

// TestOverlayShapes checks what sets the variants apart, so that no check
// passes for want of the object it checks.
func TestOverlayShapes(t *testing.T) {
	for _, name := range overlays {
		t.Run(name, func(t *testing.T) {
			m, in := renderInstance(t, name)
			var lbs []*corev1.Service
			for _, s := range m.servicesOf(in) {
				if s.Spec.Type == corev1.ServiceTypeLoadBalancer {
					lbs = append(lbs, s)
				}
			}
			hostNet := name == "hostnetwork"
			if in.Pod.HostNetwork != hostNet {
				t.Errorf("hostNetwork %v", in.Pod.HostNetwork)
			}
			if want := map[bool]int{true: 0, false: 1}[hostNet]; len(lbs) != want {
				t.Errorf("%d LoadBalancer Services select the pods, want %d", len(lbs), want)
			}
			if !slices.ContainsFunc(in.Config.Upstreams, srvName.MatchString) {
				t.Errorf("upstreams %v: no Service SRV name", in.Config.Upstreams)
			}
			if len(m.PDBs) != 1 || len(m.Namespaces) != 1 {
				t.Errorf("%d PodDisruptionBudgets, %d Namespaces; want one each", len(m.PDBs), len(m.Namespaces))
			}
			if in.Container.Lifecycle == nil || in.Container.Lifecycle.PreStop == nil || in.Container.Lifecycle.PreStop.Sleep == nil {
				t.Errorf("no preStop sleep")
			}
			b, err := m.File(in, in.Config.SecretFile)
			if err != nil || string(b) != testSecrets["base/secrets/branch-secret"] {
				t.Errorf("secret_file %s holds %q (%v), want the generator's file", in.Config.SecretFile, b, err)
			}
			vol, _, err := in.volumeAt(in.Config.SecretFile)
			if err != nil || vol.Secret == nil || vol.Secret.DefaultMode == nil || *vol.Secret.DefaultMode != 0o440 {
				t.Errorf("secret volume %+v (%v), want defaultMode 0440 (YAML's 0440 read as octal)", vol, err)
			}
			level := m.Namespaces[0].Labels["pod-security.kubernetes.io/enforce"]
			if want := map[bool]string{true: "privileged", false: "restricted"}[hostNet]; level != want {
				t.Errorf("namespace pod-security level %q, want %q", level, want)
			}
		})
	}
}

// TestDecodeIsStrict: a misspelt field, a duplicate key or an unknown kind
// in the rendered YAML is an error, not a field quietly dropped.
func TestDecodeIsStrict(t *testing.T) {
	docs := renderDocs(t, "hostnetwork")
	ds := slices.IndexFunc(docs, func(d []byte) bool { return strings.Contains(string(d), "kind: DaemonSet") })
	if ds < 0 {
		t.Fatal("no DaemonSet rendered")
	}
	for name, edit := range map[string]func(string) string{
		"unknown field": func(s string) string {
			return strings.Replace(s, "hostNetwork: true", "hostNetwrok: true", 1)
		},
		"duplicate key": func(s string) string {
			return strings.Replace(s, "hostNetwork: true", "hostNetwork: true\n      hostNetwork: false", 1)
		},
		"unknown kind": func(s string) string { return strings.Replace(s, "kind: DaemonSet", "kind: Deployment", 1) },
	} {
		t.Run(name, func(t *testing.T) {
			bad := slices.Clone(docs)
			bad[ds] = []byte(edit(string(docs[ds])))
			if string(bad[ds]) == string(docs[ds]) {
				t.Fatal("the edit changed nothing")
			}
			if _, err := Decode(bad); err == nil {
				t.Fatalf("Decode accepted:\n%s", bad[ds])
			} else {
				t.Log(err)
			}
		})
	}
}
