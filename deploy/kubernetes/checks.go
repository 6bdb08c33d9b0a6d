package kubernetes

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Failure is a check that failed, with the reason.
type Failure struct {
	Check string
	Err   error
}

func (f *Failure) Error() string { return f.Check + ": " + f.Err.Error() }
func (f *Failure) Unwrap() error { return f.Err }

// Check is one invariant of an overlay's manifests.
type Check struct {
	Name string
	Run  func(*Manifests, *Instance) error
}

// Checks are the invariants every overlay must keep. Before them,
// Manifests.Instance finds the configuration where --config says (the
// config-mount check).
var Checks = []Check{
	{"secret-mount", checkSecretMount},
	{"probes", checkProbes},
	{"grace-period", checkGracePeriod},
	{"container-ports", checkContainerPorts},
	{"host-network-dns", checkHostNetworkDNS},
	{"service", checkServices},
	{"advertise", checkAdvertise},
	{"security", checkSecurity},
	{"pdb", checkPDB},
	{"upstream-srv", checkUpstreamSRV},
	{"metrics", checkMetrics},
	{"resources", checkResources},
}

// Verify runs every check on m and returns the failures.
func Verify(m *Manifests) []*Failure {
	in, err := m.Instance()
	if err != nil {
		var f *Failure
		if errors.As(err, &f) {
			return []*Failure{f}
		}
		return []*Failure{{Check: "instance", Err: err}}
	}
	var out []*Failure
	for _, c := range Checks {
		if err := c.Run(m, in); err != nil {
			out = append(out, &Failure{Check: c.Name, Err: err})
		}
	}
	return out
}

// checkSecretMount: secret_file and admin.token_file are keys of a Secret
// mounted where the configuration reads them, readable by the container's
// user.
func checkSecretMount(m *Manifests, in *Instance) error {
	if in.Config.SecretFile == "" {
		return errors.New("no secret_file: every instance would draw its own random secret and drop the responses to the others' requests")
	}
	for key, p := range map[string]string{"secret_file": in.Config.SecretFile, "admin.token_file": in.Config.AdminTokenFile} {
		if p == "" {
			continue
		}
		vol, _, err := in.volumeAt(p)
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		if vol.Secret == nil {
			return fmt.Errorf("%s: %s is not in a Secret volume", key, p)
		}
		if _, err := m.File(in, p); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		if err := readable(in, vol.Secret); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
	}
	return nil
}

// readable reports whether the container's non-root user can read the
// files of a Secret volume (owned by root, group fsGroup when set).
func readable(in *Instance, s *corev1.SecretVolumeSource) error {
	mode := int32(corev1.SecretVolumeSourceDefaultMode)
	if s.DefaultMode != nil {
		mode = *s.DefaultMode
	}
	if mode&0o004 != 0 {
		return nil
	}
	if sc := in.Pod.SecurityContext; mode&0o040 != 0 && sc != nil && sc.FSGroup != nil {
		return nil
	}
	return fmt.Errorf("mode %#o of Secret %s's files: the non-root user cannot read them (set fsGroup with group read, or other read)", mode, s.SecretName)
}

// checkProbes: the readiness probe asks /readyz on the admin API's port,
// at an address the kubelet reaches (the pod's IP); liveness, when set,
// asks /healthz there.
func checkProbes(_ *Manifests, in *Instance) error {
	host, port, err := in.Config.AdminPort()
	if err != nil {
		return err
	}
	if a, err := netip.ParseAddr(host); host == "localhost" || (err == nil && a.IsLoopback()) {
		return fmt.Errorf("admin.listen %s is loopback: the kubelet probes the pod's IP", in.Config.AdminListen)
	}
	if err := checkHTTPProbe(in, "readinessProbe", in.Container.ReadinessProbe, "/readyz", port); err != nil {
		return err
	}
	if in.Container.LivenessProbe != nil {
		return checkHTTPProbe(in, "livenessProbe", in.Container.LivenessProbe, "/healthz", port)
	}
	return nil
}

// checkHTTPProbe checks that p is an HTTP GET of path on port.
func checkHTTPProbe(in *Instance, name string, p *corev1.Probe, path string, port int32) error {
	if p == nil || p.HTTPGet == nil {
		return fmt.Errorf("%s: want an httpGet of %s", name, path)
	}
	g := p.HTTPGet
	if g.Path != path {
		return fmt.Errorf("%s: path %q, want %s", name, g.Path, path)
	}
	if g.Host != "" || (g.Scheme != "" && g.Scheme != corev1.URISchemeHTTP) {
		return fmt.Errorf("%s: want plain HTTP to the pod's IP, got host %q scheme %q", name, g.Host, g.Scheme)
	}
	got, err := in.containerPort(g.Port)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if got != port {
		return fmt.Errorf("%s: port %d, but admin.listen is %s", name, got, in.Config.AdminListen)
	}
	return nil
}

// containerPort resolves a port given by number or by the name of one of
// the container's ports.
func (in *Instance) containerPort(p intstr.IntOrString) (int32, error) {
	if p.Type == intstr.Int {
		return p.IntVal, nil
	}
	for _, cp := range in.Container.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort, nil
		}
	}
	return 0, fmt.Errorf("no container port named %q", p.StrVal)
}

// checkGracePeriod: the grace period outlasts the preStop pause plus
// shutdown_drain, so the kubelet's SIGKILL never cuts the drain short.
func checkGracePeriod(_ *Manifests, in *Instance) error {
	grace := time.Duration(corev1.DefaultTerminationGracePeriodSeconds) * time.Second
	if g := in.Pod.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	lc := in.Container.Lifecycle
	if lc == nil || lc.PreStop == nil {
		return errors.New("no preStop: SIGTERM would come before the endpoint removal reaches kube-proxy and the load balancers")
	}
	var pause time.Duration
	if s := lc.PreStop.Sleep; s != nil {
		pause = time.Duration(s.Seconds) * time.Second
	}
	if grace <= pause+in.Config.ShutdownDrain {
		return fmt.Errorf("terminationGracePeriodSeconds %v does not exceed the preStop pause %v plus shutdown_drain %v", grace, pause, in.Config.ShutdownDrain)
	}
	return nil
}

// checkContainerPorts: the container declares exactly the SIP listeners
// and the admin port, each with its protocol (with hostNetwork, on the
// same host port).
func checkContainerPorts(_ *Manifests, in *Instance) error {
	want, err := in.Config.Listeners()
	if err != nil {
		return err
	}
	_, admin, err := in.Config.AdminPort()
	if err != nil {
		return err
	}
	want = append(want, Listener{Protocol: corev1.ProtocolTCP, Port: admin})
	var got []Listener
	for _, cp := range in.Container.Ports {
		proto := cp.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		if cp.HostPort != 0 && cp.HostPort != cp.ContainerPort {
			return fmt.Errorf("port %s: hostPort %d differs from containerPort %d", cp.Name, cp.HostPort, cp.ContainerPort)
		}
		got = append(got, Listener{Protocol: proto, Port: cp.ContainerPort})
	}
	return sameListeners("container ports", got, "listeners and admin", want)
}

// sameListeners compares two sets of listeners.
func sameListeners(gotName string, got []Listener, wantName string, want []Listener) error {
	cmp := func(a, b Listener) int { return strings.Compare(a.String(), b.String()) }
	slices.SortFunc(got, cmp)
	slices.SortFunc(want, cmp)
	got, want = slices.Compact(got), slices.Compact(want)
	if !slices.Equal(got, want) {
		return fmt.Errorf("%s %v, %s %v", gotName, got, wantName, want)
	}
	return nil
}

// checkHostNetworkDNS: a pod in the host's network resolves cluster names
// only with dnsPolicy ClusterFirstWithHostNet.
func checkHostNetworkDNS(_ *Manifests, in *Instance) error {
	if in.Pod.HostNetwork && in.Pod.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		return fmt.Errorf("hostNetwork with dnsPolicy %q: the registrars' SRV name would go to the node's resolver; want ClusterFirstWithHostNet", in.Pod.DNSPolicy)
	}
	return nil
}

// checkServices: every Service in front of the pods forwards exactly the
// SIP listeners, each with its protocol (UDP and TCP where both listen),
// to the container's ports; a LoadBalancer keeps the clients' addresses
// (externalTrafficPolicy Local).
func checkServices(m *Manifests, in *Instance) error {
	want, err := in.Config.Listeners()
	if err != nil {
		return err
	}
	for _, s := range m.servicesOf(in) {
		if s.Spec.Type == corev1.ServiceTypeLoadBalancer && s.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
			return fmt.Errorf("Service %s: externalTrafficPolicy %q: the clients' addresses would be SNATed to a node's; want Local", s.Name, s.Spec.ExternalTrafficPolicy)
		}
		var got []Listener
		for _, p := range s.Spec.Ports {
			target := p.TargetPort
			if target.Type == intstr.Int && target.IntVal == 0 {
				target = intstr.FromInt32(p.Port)
			}
			port, err := in.containerPort(target)
			if err != nil {
				return fmt.Errorf("Service %s port %s: %w", s.Name, p.Name, err)
			}
			got = append(got, Listener{Protocol: p.Protocol, Port: port})
		}
		if err := sameListeners("Service "+s.Name+" ports", got, "listeners", want); err != nil {
			return err
		}
	}
	return nil
}

// servicesOf returns the Services whose selector selects in's pods.
func (m *Manifests) servicesOf(in *Instance) []*corev1.Service {
	var out []*corev1.Service
	for _, s := range m.Services {
		if s.Namespace == in.Namespace && len(s.Spec.Selector) > 0 &&
			labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(in.Labels)) {
			out = append(out, s)
		}
	}
	return out
}

// checkAdvertise: in pod networking the pod's IP is no address clients
// reach, so Via and Record-Route must name the Service's (advertise).
func checkAdvertise(_ *Manifests, in *Instance) error {
	if in.Pod.HostNetwork {
		return nil
	}
	a := in.Config.Advertise
	if a == "" || strings.Contains(a, PodIP) {
		return fmt.Errorf("advertise %q in pod networking: Via would name the pod's IP; set the load balancer's address", a)
	}
	return nil
}

// checkSecurity: a non-root user, no privilege escalation, every
// capability dropped but NET_BIND_SERVICE.
func checkSecurity(_ *Manifests, in *Instance) error {
	psc := in.Pod.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	csc := in.Container.SecurityContext
	if csc == nil {
		csc = &corev1.SecurityContext{}
	}
	nonRoot := cmpOr(csc.RunAsNonRoot, psc.RunAsNonRoot)
	if nonRoot == nil || !*nonRoot {
		return errors.New("runAsNonRoot is not true")
	}
	if uid := cmpOr(csc.RunAsUser, psc.RunAsUser); uid == nil || *uid == 0 {
		return errors.New("runAsUser is not set to a non-zero user")
	}
	if ape := csc.AllowPrivilegeEscalation; ape == nil || *ape {
		return errors.New("allowPrivilegeEscalation is not false")
	}
	caps := csc.Capabilities
	if caps == nil || !slices.Contains(caps.Drop, "ALL") {
		return errors.New("capabilities: want drop ALL")
	}
	if !slices.Equal(caps.Add, []corev1.Capability{"NET_BIND_SERVICE"}) {
		return fmt.Errorf("capabilities: add %v, want [NET_BIND_SERVICE]", caps.Add)
	}
	return nil
}

// cmpOr returns the first non-nil pointer.
func cmpOr[T any](ps ...*T) *T {
	for _, p := range ps {
		if p != nil {
			return p
		}
	}
	return nil
}

// checkPDB: a PodDisruptionBudget of the pods' namespace selects them.
func checkPDB(m *Manifests, in *Instance) error {
	for _, p := range m.PDBs {
		if p.Namespace != in.Namespace || p.Spec.Selector == nil {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil {
			return fmt.Errorf("PodDisruptionBudget %s: %w", p.Name, err)
		}
		if !sel.Empty() && sel.Matches(labels.Set(in.Labels)) {
			return nil
		}
	}
	return fmt.Errorf("no PodDisruptionBudget in namespace %s selects the pods %v", in.Namespace, in.Labels)
}

// srvName is an SRV name of a Kubernetes Service:
// _PORT._PROTO.SERVICE.NAMESPACE.svc.DOMAIN.
var srvName = regexp.MustCompile(`^_([a-z0-9-]+)\._(udp|tcp)\.([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.[a-z0-9.-]+?\.?$`)

// checkUpstreamSRV: an upstream named by a Service's SRV record names a
// headless Service of the render with a port of that name and protocol
// (a headless Service has one SRV record per ready pod; a ClusterIP one
// only its virtual IP, whose kube-proxy balancing would defeat Viaduct's).
func checkUpstreamSRV(m *Manifests, in *Instance) error {
	for _, u := range in.Config.Upstreams {
		g := srvName.FindStringSubmatch(u)
		if g == nil {
			continue
		}
		port, proto, svc, ns := g[1], corev1.Protocol(strings.ToUpper(g[2])), g[3], g[4]
		if err := m.headlessPort(ns, svc, port, proto); err != nil {
			return fmt.Errorf("upstream %s: %w", u, err)
		}
	}
	return nil
}

// headlessPort checks that the Service ns/name is headless with a port
// named port of protocol proto.
func (m *Manifests) headlessPort(ns, name, port string, proto corev1.Protocol) error {
	for _, s := range m.Services {
		if s.Namespace != ns || s.Name != name {
			continue
		}
		if s.Spec.ClusterIP != corev1.ClusterIPNone {
			return fmt.Errorf("Service %s/%s is not headless (clusterIP: None)", ns, name)
		}
		for _, p := range s.Spec.Ports {
			if p.Name == port && p.Protocol == proto {
				return nil
			}
		}
		return fmt.Errorf("Service %s/%s has no %s port named %s", ns, name, proto, port)
	}
	return fmt.Errorf("no Service %s in namespace %s", name, ns)
}

// checkMetrics: the Prometheus annotations point at /metrics on the admin
// port.
func checkMetrics(_ *Manifests, in *Instance) error {
	_, port, err := in.Config.AdminPort()
	if err != nil {
		return err
	}
	a := in.DaemonSet.Spec.Template.Annotations
	want := map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": fmt.Sprint(port), "prometheus.io/path": "/metrics"}
	for k, v := range want {
		if a[k] != v {
			return fmt.Errorf("pod annotation %s is %q, want %q", k, a[k], v)
		}
	}
	return nil
}

// checkResources: CPU and memory requests, and a memory limit no lower
// than the request.
func checkResources(_ *Manifests, in *Instance) error {
	r := in.Container.Resources
	cpu, mem := r.Requests[corev1.ResourceCPU], r.Requests[corev1.ResourceMemory]
	if cpu.IsZero() || mem.IsZero() {
		return fmt.Errorf("requests cpu %v memory %v: want both", &cpu, &mem)
	}
	limit, ok := r.Limits[corev1.ResourceMemory]
	if !ok || limit.Cmp(mem) < 0 {
		return fmt.Errorf("memory limit %v: want one, at least the request %v", &limit, &mem)
	}
	return nil
}
