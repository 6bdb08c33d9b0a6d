package kubernetes

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// mutation breaks one invariant of a rendered overlay.
type mutation struct {
	check   string // the check that must fail
	name    string
	overlay string
	mutate  func(t *testing.T, m *Manifests)
}

// container returns the Viaduct container of m's DaemonSet.
func container(m *Manifests) *corev1.Container {
	return &m.DaemonSets[0].Spec.Template.Spec.Containers[0]
}

// podSpec returns m's pod template spec.
func podSpec(m *Manifests) *corev1.PodSpec { return &m.DaemonSets[0].Spec.Template.Spec }

// setArg replaces the argument --name=... with --name=value, or removes it
// when value is "".
func setArg(t *testing.T, m *Manifests, name, value string) {
	t.Helper()
	c := container(m)
	i := slices.IndexFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--"+name+"=") })
	if i < 0 {
		t.Fatalf("no --%s in %v", name, c.Args)
	}
	if value == "" {
		c.Args = slices.Delete(c.Args, i, i+1)
		return
	}
	c.Args[i] = "--" + name + "=" + value
}

// editConfig replaces old with new in the ConfigMap's viaduct.yaml.
func editConfig(t *testing.T, m *Manifests, old, new string) {
	t.Helper()
	d := m.ConfigMaps[0].Data
	if !strings.Contains(d["viaduct.yaml"], old) {
		t.Fatalf("viaduct.yaml has no %q", old)
	}
	d["viaduct.yaml"] = strings.Replace(d["viaduct.yaml"], old, new, 1)
}

// volume returns the pod's volume name.
func volume(t *testing.T, m *Manifests, name string) *corev1.Volume {
	t.Helper()
	for i, v := range podSpec(m).Volumes {
		if v.Name == name {
			return &podSpec(m).Volumes[i]
		}
	}
	t.Fatalf("no volume %s", name)
	return nil
}

// service returns the Service name of m.
func service(t *testing.T, m *Manifests, name string) *corev1.Service {
	t.Helper()
	for _, s := range m.Services {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no Service %s", name)
	return nil
}

var mutations = []mutation{
	{"config-mount", "ConfigMap volume names another ConfigMap", "loadbalancer", func(t *testing.T, m *Manifests) {
		volume(t, m, "config").ConfigMap.Name = "viaduct-config-old"
	}},
	{"config-mount", "--config points outside the mount", "hostnetwork", func(t *testing.T, m *Manifests) {
		setArg(t, m, "config", "/etc/viaduct/viaduct.yaml")
	}},
	{"secret-mount", "Secret mounted elsewhere", "loadbalancer", func(t *testing.T, m *Manifests) {
		container(m).VolumeMounts[1].MountPath = "/etc/viaduct/secrets"
	}},
	{"secret-mount", "secret_file names a key the Secret lacks", "hostnetwork", func(t *testing.T, m *Manifests) {
		editConfig(t, m, "secret_file: /etc/viaduct/secret/branch-secret", "secret_file: /etc/viaduct/secret/secret")
	}},
	{"secret-mount", "no secret_file", "hostnetwork", func(t *testing.T, m *Manifests) {
		editConfig(t, m, "secret_file: /etc/viaduct/secret/branch-secret", "")
	}},
	{"secret-mount", "Secret files unreadable by the user", "loadbalancer", func(t *testing.T, m *Manifests) {
		mode := int32(0o400)
		volume(t, m, "secret").Secret.DefaultMode = &mode
	}},
	{"probes", "readiness asks /healthz", "loadbalancer", func(t *testing.T, m *Manifests) {
		container(m).ReadinessProbe.HTTPGet.Path = "/healthz"
	}},
	{"probes", "readiness on the SIP port", "hostnetwork", func(t *testing.T, m *Manifests) {
		container(m).ReadinessProbe.HTTPGet.Port = intstr.FromString("sip-udp")
	}},
	{"probes", "admin API on loopback", "hostnetwork", func(t *testing.T, m *Manifests) {
		setArg(t, m, "admin-listen", "127.0.0.1:9090")
	}},
	{"probes", "admin API moved, probe not", "loadbalancer", func(t *testing.T, m *Manifests) {
		setArg(t, m, "admin-listen", "$(POD_IP):9091")
	}},
	{"grace-period", "shutdown_drain outlasts the grace period", "loadbalancer", func(t *testing.T, m *Manifests) {
		editConfig(t, m, "shutdown_drain: 32s", "shutdown_drain: 40s")
	}},
	{"grace-period", "grace period shortened", "hostnetwork", func(t *testing.T, m *Manifests) {
		g := int64(30)
		podSpec(m).TerminationGracePeriodSeconds = &g
	}},
	{"grace-period", "no preStop", "hostnetwork", func(t *testing.T, m *Manifests) {
		container(m).Lifecycle = nil
	}},
	{"container-ports", "SIP port not declared", "hostnetwork", func(t *testing.T, m *Manifests) {
		container(m).Ports = container(m).Ports[1:]
	}},
	{"container-ports", "SIP port declared as TCP", "loadbalancer", func(t *testing.T, m *Manifests) {
		container(m).Ports[0].Protocol = corev1.ProtocolTCP
	}},
	{"container-ports", "listen moved, port not", "hostnetwork", func(t *testing.T, m *Manifests) {
		setArg(t, m, "listen", "$(POD_IP):5080")
	}},
	{"host-network-dns", "hostNetwork with the node's resolver", "hostnetwork", func(t *testing.T, m *Manifests) {
		podSpec(m).DNSPolicy = corev1.DNSClusterFirst
	}},
	{"service", "externalTrafficPolicy Cluster", "loadbalancer", func(t *testing.T, m *Manifests) {
		service(t, m, "viaduct-sip").Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
	}},
	{"service", "Service port with the wrong protocol", "loadbalancer", func(t *testing.T, m *Manifests) {
		service(t, m, "viaduct-sip").Spec.Ports[0].Protocol = corev1.ProtocolTCP
	}},
	{"service", "a second listener the Service lacks", "loadbalancer", func(t *testing.T, m *Manifests) {
		setArg(t, m, "listen", "$(POD_IP):5060,$(POD_IP):5080")
	}},
	{"advertise", "pod networking without advertise", "loadbalancer", func(t *testing.T, m *Manifests) {
		setArg(t, m, "advertise", "")
	}},
	{"security", "runAsNonRoot false", "loadbalancer", func(t *testing.T, m *Manifests) {
		f := false
		podSpec(m).SecurityContext.RunAsNonRoot = &f
	}},
	{"security", "user root", "hostnetwork", func(t *testing.T, m *Manifests) {
		root := int64(0)
		container(m).SecurityContext.RunAsUser = &root
	}},
	{"security", "privilege escalation allowed", "hostnetwork", func(t *testing.T, m *Manifests) {
		container(m).SecurityContext.AllowPrivilegeEscalation = nil
	}},
	{"security", "NET_BIND_SERVICE missing", "loadbalancer", func(t *testing.T, m *Manifests) {
		container(m).SecurityContext.Capabilities.Add = nil
	}},
	{"security", "another capability added", "loadbalancer", func(t *testing.T, m *Manifests) {
		c := container(m).SecurityContext.Capabilities
		c.Add = append(c.Add, "NET_ADMIN")
	}},
	{"pdb", "PDB selects other pods", "hostnetwork", func(t *testing.T, m *Manifests) {
		m.PDBs[0].Spec.Selector.MatchLabels["app.kubernetes.io/component"] = "other"
	}},
	{"pdb", "PDB in another namespace", "loadbalancer", func(t *testing.T, m *Manifests) {
		m.PDBs[0].Namespace = "default"
	}},
	{"upstream-srv", "registrar port renamed", "hostnetwork", func(t *testing.T, m *Manifests) {
		service(t, m, "registrar").Spec.Ports[0].Name = "sip-udp"
	}},
	{"upstream-srv", "registrar Service not headless", "loadbalancer", func(t *testing.T, m *Manifests) {
		service(t, m, "registrar").Spec.ClusterIP = ""
	}},
	{"upstream-srv", "SRV name in another namespace", "loadbalancer", func(t *testing.T, m *Manifests) {
		editConfig(t, m, "registrar.viaduct.svc", "registrar.sip.svc")
	}},
	{"metrics", "scrape port not the admin port", "hostnetwork", func(t *testing.T, m *Manifests) {
		m.DaemonSets[0].Spec.Template.Annotations["prometheus.io/port"] = "5060"
	}},
	{"resources", "no memory limit", "loadbalancer", func(t *testing.T, m *Manifests) {
		delete(container(m).Resources.Limits, corev1.ResourceMemory)
	}},
	{"resources", "memory limit below the request", "hostnetwork", func(t *testing.T, m *Manifests) {
		container(m).Resources.Limits[corev1.ResourceMemory] = resource.MustParse("32Mi")
	}},
}

// TestChecksCanFail breaks each invariant in a rendered overlay and
// expects its check to fail (every check has at least one such case).
func TestChecksCanFail(t *testing.T) {
	covered := map[string]bool{}
	for _, mu := range mutations {
		covered[mu.check] = true
		t.Run(mu.check+"/"+mu.name, func(t *testing.T) {
			m := render(t, mu.overlay)
			mu.mutate(t, m)
			failures := Verify(m)
			if !slices.ContainsFunc(failures, func(f *Failure) bool { return f.Check == mu.check }) {
				t.Fatalf("check %s did not fail; failures: %v", mu.check, failures)
			}
			for _, f := range failures {
				t.Log(f)
			}
		})
	}
	for _, c := range append([]Check{{Name: "config-mount"}}, Checks...) {
		if !covered[c.Name] {
			t.Errorf("check %s: no mutation shows that it can fail", c.Name)
		}
	}
}
