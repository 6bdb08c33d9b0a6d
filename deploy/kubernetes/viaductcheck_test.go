package kubernetes

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/viaduct-sip/viaduct/resolve/resolvetest"
)

// resolverEnv names the DNS server the test build of viaduct asks.
const resolverEnv = "VIADUCT_K8S_TEST_DNS"

// testResolver is added to package main of cmd/viaduct in the test build
// (go build -overlay): every lookup goes to the server resolverEnv names,
// so the registrars' SRV name resolves without a cluster.
const testResolver = `package main

import (
	"context"
	"net"
	"os"
)

func init() {
	addr := os.Getenv("` + resolverEnv + `")
	if addr == "" {
		return
	}
	net.DefaultResolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", addr)
	}}
}
`

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// TestMain removes the test build of viaduct after the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// buildViaduct builds cmd/viaduct of the main module (two directories up)
// with testResolver added, once for all the tests.
func buildViaduct(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() { buildDir, buildErr = build() })
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "viaduct")
}

// build builds viaduct into a new directory and returns it.
func build() (string, error) {
	repo, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "viaduct-k8s-test")
	if err != nil {
		return "", err
	}
	src := filepath.Join(dir, "resolver.go")
	overlay := filepath.Join(dir, "overlay.json")
	ov, err := json.Marshal(map[string]any{"Replace": map[string]string{
		filepath.Join(repo, "cmd", "viaduct", "zz_k8s_test_resolver.go"): src,
	}})
	if err != nil {
		return dir, err
	}
	if err := os.WriteFile(src, []byte(testResolver), 0o644); err != nil {
		return dir, err
	}
	if err := os.WriteFile(overlay, ov, 0o644); err != nil {
		return dir, err
	}
	cmd := exec.Command("go", "build", "-overlay", overlay, "-o", filepath.Join(dir, "viaduct"), "./cmd/viaduct")
	cmd.Dir = repo
	if out, err := cmd.CombinedOutput(); err != nil {
		return dir, fmt.Errorf("go build ./cmd/viaduct: %v\n%s", err, out)
	}
	return dir, nil
}

// materialize writes the files of the ConfigMap and Secret volumes of
// in's container under root, each at root + its mount path, and returns
// a function that moves a path of the container under root.
func materialize(t *testing.T, m *Manifests, in *Instance, root string) func(string) string {
	t.Helper()
	var mounts []string
	for _, vm := range in.Container.VolumeMounts {
		mounts = append(mounts, vm.MountPath)
	}
	move := func(s string) string {
		for _, mp := range mounts {
			s = strings.ReplaceAll(s, mp+"/", filepath.Join(root, mp)+"/")
		}
		return s
	}
	for _, vm := range in.Container.VolumeMounts {
		files := map[string][]byte{}
		for _, v := range in.Pod.Volumes {
			if v.Name != vm.Name {
				continue
			}
			for _, cm := range m.ConfigMaps {
				if v.ConfigMap != nil && cm.Name == v.ConfigMap.Name {
					for k, d := range cm.Data {
						files[k] = []byte(move(d))
					}
				}
			}
			if s := v.Secret; s != nil && m.secret(in.Namespace, s.SecretName) != nil {
				files = m.secret(in.Namespace, s.SecretName).Data
			}
		}
		dir := filepath.Join(root, vm.MountPath)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for k, d := range files {
			if err := os.WriteFile(filepath.Join(dir, k), d, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	return move
}

// runCheck runs `viaduct --check` with the container's arguments (paths
// moved under root) and returns its exit code, standard output and error.
func runCheck(t *testing.T, bin, dns string, args []string, move func(string) string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(bin, "--check")
	for _, a := range args {
		cmd.Args = append(cmd.Args, move(a))
	}
	cmd.Env = append(os.Environ(), resolverEnv+"="+dns)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if _, exit := err.(*exec.ExitError); err != nil && !exit {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// TestViaductAcceptsTheConfig runs `viaduct --check` over each overlay's
// configuration as its pod would start: the container's arguments with
// the pod's IP, the ConfigMap and the Secret's files where the volumes
// put them, and the registrars' SRV name answered by a DNS server. Without
// the secret file in place, the same check fails.
func TestViaductAcceptsTheConfig(t *testing.T) {
	bin := buildViaduct(t)
	dns := resolvetest.NewServer(t)
	dns.Set("_sip._udp.registrar.viaduct.svc.cluster.local",
		resolvetest.SRV(0, 10, 5060, "10-244-1-7.registrar.viaduct.svc.cluster.local."),
		resolvetest.SRV(0, 10, 5060, "10-244-2-9.registrar.viaduct.svc.cluster.local."))
	dns.Set("10-244-1-7.registrar.viaduct.svc.cluster.local", resolvetest.A("10.244.1.7"))
	dns.Set("10-244-2-9.registrar.viaduct.svc.cluster.local", resolvetest.A("10.244.2.9"))
	dnsAddr := serverAddr(t, dns)
	want := map[string][]string{
		"hostnetwork":  {"advertise=" + PodIP + ":5060"},
		"loadbalancer": {"advertise=sip.example.net:5060"},
	}
	for _, name := range overlays {
		t.Run(name, func(t *testing.T) {
			m, in := renderInstance(t, name)
			root := t.TempDir()
			move := materialize(t, m, in, root)
			code, out, errOut := runCheck(t, bin, dnsAddr, in.Args, move)
			if code != 0 {
				t.Fatalf("viaduct --check %v: exit %d\n%s%s", in.Args, code, out, errOut)
			}
			for _, w := range append(want[name], "configuration OK", "listen=[udp:"+PodIP+":5060 tcp:"+PodIP+":5060]", "admin="+PodIP+":9090",
				"secret=configured", "address=10.244.1.7:5060", "address=10.244.2.9:5060") {
				if !strings.Contains(out, w) {
					t.Errorf("viaduct --check printed no %q:\n%s", w, out)
				}
			}
			if err := os.Remove(move(in.Config.SecretFile)); err != nil {
				t.Fatal(err)
			}
			code, _, errOut = runCheck(t, bin, dnsAddr, in.Args, move)
			if code == 0 || !strings.Contains(errOut, "secret_file") {
				t.Errorf("without the secret file: exit %d, %q; want a secret_file error", code, errOut)
			}
		})
	}
}

// serverAddr returns the address of the DNS server s.
func serverAddr(t *testing.T, s *resolvetest.Server) string {
	t.Helper()
	c, err := s.Resolver().Dial(context.Background(), "udp", "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.RemoteAddr().String()
}
