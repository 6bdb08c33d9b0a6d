package kubernetes

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// ContainerName is the name of Viaduct's container in the pod.
const ContainerName = "viaduct"

// defaultShutdownDrain is Viaduct's shutdown_drain when the key is absent.
const defaultShutdownDrain = 5 * time.Second

// Instance is one Viaduct pod as the DaemonSet describes it: its template,
// its container and its configuration.
type Instance struct {
	DaemonSet *appsv1.DaemonSet
	Namespace string
	Pod       *corev1.PodSpec
	Labels    map[string]string
	Container *corev1.Container
	// Args are the container's arguments with $(VAR) expanded as the
	// kubelet does, the pod's IP being PodIP.
	Args   []string
	Config Config
}

// PodIP stands for the pod's IP (status.podIP, status.hostIP) when the
// checks expand the container's arguments.
const PodIP = "192.0.2.10"

// Config is the part of Viaduct's configuration the checks compare with
// the manifests: the file named by --config, from the ConfigMap mounted
// there, with the command-line flags applied over it as Viaduct applies
// them.
type Config struct {
	Path           string // --config
	Listen         []string
	Advertise      string
	SecretFile     string
	AdminListen    string
	AdminTokenFile string
	ShutdownDrain  time.Duration
	Upstreams      []string
}

// fileConfig holds the keys of Config as the file writes them. Other keys
// are ignored here: `viaduct --check` validates the whole file.
type fileConfig struct {
	Listen        []string        `json:"listen"`
	Advertise     string          `json:"advertise"`
	SecretFile    string          `json:"secret_file"`
	ShutdownDrain string          `json:"shutdown_drain"`
	Upstreams     []upstreamEntry `json:"upstreams"`
	Admin         struct {
		Listen    string `json:"listen"`
		TokenFile string `json:"token_file"`
	} `json:"admin"`
}

// upstreamEntry is an upstreams entry: "address" or {address: ...}.
type upstreamEntry struct{ Address string }

func (u *upstreamEntry) UnmarshalJSON(b []byte) error {
	if json.Unmarshal(b, &u.Address) == nil {
		return nil
	}
	var m struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	u.Address = m.Address
	return nil
}

// Instance returns the Viaduct pod of m: the only DaemonSet, its container
// named viaduct and the configuration its --config names. A configuration
// that cannot be found where --config says is a failure of the
// config-mount check.
func (m *Manifests) Instance() (*Instance, error) {
	if len(m.DaemonSets) != 1 {
		return nil, fmt.Errorf("want one DaemonSet, the render has %d", len(m.DaemonSets))
	}
	ds := m.DaemonSets[0]
	in := &Instance{DaemonSet: ds, Namespace: ds.Namespace, Pod: &ds.Spec.Template.Spec, Labels: ds.Spec.Template.Labels}
	for i := range in.Pod.Containers {
		if in.Pod.Containers[i].Name == ContainerName {
			in.Container = &in.Pod.Containers[i]
		}
	}
	if in.Container == nil {
		return nil, fmt.Errorf("DaemonSet %s has no container named %s", ds.Name, ContainerName)
	}
	var err error
	if in.Args, err = expandArgs(in.Container); err != nil {
		return nil, err
	}
	if err := m.loadConfig(in); err != nil {
		return nil, &Failure{Check: "config-mount", Err: err}
	}
	return in, nil
}

// loadConfig reads the file --config names from the ConfigMap mounted
// there and applies the flags over it.
func (m *Manifests) loadConfig(in *Instance) error {
	flags := parseFlags(in.Args)
	p := flags["config"]
	if p == "" {
		return errors.New("the container passes no --config")
	}
	b, err := m.File(in, p)
	if err != nil {
		return fmt.Errorf("--config=%s: %w", p, err)
	}
	var fc fileConfig
	if err := yaml.Unmarshal(b, &fc); err != nil {
		return fmt.Errorf("--config=%s: %w", p, err)
	}
	c := Config{Path: p, Listen: fc.Listen, Advertise: fc.Advertise, SecretFile: fc.SecretFile,
		AdminListen: fc.Admin.Listen, AdminTokenFile: fc.Admin.TokenFile, ShutdownDrain: defaultShutdownDrain}
	for _, u := range fc.Upstreams {
		c.Upstreams = append(c.Upstreams, u.Address)
	}
	if fc.ShutdownDrain != "" {
		if c.ShutdownDrain, err = time.ParseDuration(fc.ShutdownDrain); err != nil {
			return fmt.Errorf("--config=%s: shutdown_drain: %w", p, err)
		}
	}
	if err := c.applyFlags(flags); err != nil {
		return err
	}
	in.Config = c
	return nil
}

// applyFlags applies the flags that stand for keys of Config over it.
func (c *Config) applyFlags(flags map[string]string) error {
	if v, ok := flags["listen"]; ok {
		c.Listen = strings.Split(v, ",")
	}
	for flag, key := range map[string]*string{
		"advertise": &c.Advertise, "secret-file": &c.SecretFile,
		"admin-listen": &c.AdminListen, "admin-token-file": &c.AdminTokenFile,
	} {
		if v, ok := flags[flag]; ok {
			*key = v
		}
	}
	if v, ok := flags["shutdown-drain"]; ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("--shutdown-drain: %w", err)
		}
		c.ShutdownDrain = d
	}
	return nil
}

// parseFlags returns the --name=value arguments by name.
func parseFlags(args []string) map[string]string {
	out := map[string]string{}
	for _, a := range args {
		name, value, ok := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if ok && strings.HasPrefix(a, "-") {
			out[name] = value
		}
	}
	return out
}

// varRef is a $(VAR) reference of a container's args or env.
var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expandArgs returns c's args with the $(VAR) references to its env
// expanded as the kubelet does: a variable is a literal value (itself
// expanded over the variables before it) or a field of the pod; a
// reference to an unknown variable stays as written.
func expandArgs(c *corev1.Container) ([]string, error) {
	vars := map[string]string{}
	expand := func(s string) string {
		return varRef.ReplaceAllStringFunc(s, func(ref string) string {
			if v, ok := vars[ref[2:len(ref)-1]]; ok {
				return v
			}
			return ref
		})
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			vars[e.Name] = expand(e.Value)
		case e.ValueFrom.FieldRef != nil:
			v, err := podField(e.ValueFrom.FieldRef.FieldPath)
			if err != nil {
				return nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
			vars[e.Name] = v
		}
	}
	out := make([]string, len(c.Args))
	for i, a := range c.Args {
		out[i] = expand(a)
	}
	return out, nil
}

// podField is the stand-in value of a downward API field.
func podField(p string) (string, error) {
	switch p {
	case "status.podIP", "status.hostIP":
		return PodIP, nil
	case "spec.nodeName":
		return "edge-1", nil
	case "metadata.name":
		return "viaduct-abcde", nil
	case "metadata.namespace":
		return "viaduct", nil
	}
	return "", fmt.Errorf("field %s has no stand-in value in the checks", p)
}

// File returns the contents of the file at path p in in's container: the
// key of the ConfigMap or Secret whose volume is mounted at p's directory.
func (m *Manifests) File(in *Instance, p string) ([]byte, error) {
	vol, key, err := in.volumeAt(p)
	if err != nil {
		return nil, err
	}
	switch {
	case vol.ConfigMap != nil:
		for _, cm := range m.ConfigMaps {
			if cm.Name == vol.ConfigMap.Name && cm.Namespace == in.Namespace {
				if v, ok := cm.Data[key]; ok {
					return []byte(v), nil
				}
				return nil, fmt.Errorf("ConfigMap %s has no key %s", cm.Name, key)
			}
		}
		return nil, fmt.Errorf("volume %s: no ConfigMap %s in namespace %s", vol.Name, vol.ConfigMap.Name, in.Namespace)
	case vol.Secret != nil:
		s := m.secret(in.Namespace, vol.Secret.SecretName)
		if s == nil {
			return nil, fmt.Errorf("volume %s: no Secret %s in namespace %s", vol.Name, vol.Secret.SecretName, in.Namespace)
		}
		if v, ok := s.Data[key]; ok {
			return v, nil
		}
		if v, ok := s.StringData[key]; ok {
			return []byte(v), nil
		}
		return nil, fmt.Errorf("Secret %s has no key %s", s.Name, key)
	}
	return nil, fmt.Errorf("volume %s is neither a ConfigMap nor a Secret", vol.Name)
}

// secret returns the Secret name of namespace ns, or nil.
func (m *Manifests) secret(ns, name string) *corev1.Secret {
	for _, s := range m.Secrets {
		if s.Name == name && s.Namespace == ns {
			return s
		}
	}
	return nil
}

// volumeAt returns the volume mounted in the container at p's directory
// and the key p names in it (volumes with items are not supported).
func (in *Instance) volumeAt(p string) (*corev1.Volume, string, error) {
	dir, key := path.Split(path.Clean(p))
	dir = path.Clean(dir)
	for _, vm := range in.Container.VolumeMounts {
		if path.Clean(vm.MountPath) != dir {
			continue
		}
		if vm.SubPath != "" {
			return nil, "", fmt.Errorf("%s: mount %s uses subPath (never updated in place)", p, vm.Name)
		}
		for i := range in.Pod.Volumes {
			if v := &in.Pod.Volumes[i]; v.Name == vm.Name {
				return v, key, nil
			}
		}
		return nil, "", fmt.Errorf("%s: mount %s has no volume", p, vm.Name)
	}
	return nil, "", fmt.Errorf("%s: no volume is mounted at %s", p, dir)
}

// Listener is an address Viaduct receives SIP on, as a container port.
type Listener struct {
	Protocol corev1.Protocol
	Port     int32
}

func (l Listener) String() string { return fmt.Sprintf("%s/%d", l.Protocol, l.Port) }

// Listeners returns the SIP listeners of the configuration. Viaduct
// listens on UDP only today: the listen key's addresses. TCP and TLS
// listeners (issues #15, #16) add TCP ones here.
func (c *Config) Listeners() ([]Listener, error) {
	var out []Listener
	for _, a := range c.Listen {
		_, port, err := splitPort(a)
		if err != nil {
			return nil, fmt.Errorf("listen %q: %w", a, err)
		}
		out = append(out, Listener{Protocol: corev1.ProtocolUDP, Port: port})
	}
	return out, nil
}

// AdminPort returns the host and port of the admin listen address.
func (c *Config) AdminPort() (string, int32, error) {
	if c.AdminListen == "" || c.AdminListen == "off" {
		return "", 0, errors.New("the admin API is off (admin.listen): no /readyz for the probe")
	}
	return splitPort(c.AdminListen)
}

// splitPort splits host:port.
func splitPort(a string) (string, int32, error) {
	host, p, err := net.SplitHostPort(a)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return "", 0, fmt.Errorf("port %q", p)
	}
	return host, int32(n), nil
}
