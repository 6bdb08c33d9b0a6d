package kubernetes

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// Manifests are the objects of one rendered overlay, typed.
type Manifests struct {
	Namespaces []*corev1.Namespace
	ConfigMaps []*corev1.ConfigMap
	Secrets    []*corev1.Secret
	Services   []*corev1.Service
	DaemonSets []*appsv1.DaemonSet
	PDBs       []*policyv1.PodDisruptionBudget
}

// Decode decodes every document strictly into its Kubernetes API type:
// a field the type lacks, a duplicate key or a kind this package does not
// know is an error naming the object.
func Decode(docs [][]byte) (*Manifests, error) {
	m := &Manifests{}
	for _, d := range docs {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(d, &tm); err != nil {
			return nil, fmt.Errorf("reading apiVersion and kind: %w", err)
		}
		if err := m.add(tm, d); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// add decodes d, an object of type tm, into its list.
func (m *Manifests) add(tm metav1.TypeMeta, d []byte) error {
	switch tm.APIVersion + " " + tm.Kind {
	case "v1 Namespace":
		return decodeInto(d, &m.Namespaces)
	case "v1 ConfigMap":
		return decodeInto(d, &m.ConfigMaps)
	case "v1 Secret":
		return decodeInto(d, &m.Secrets)
	case "v1 Service":
		return decodeInto(d, &m.Services)
	case "apps/v1 DaemonSet":
		return decodeInto(d, &m.DaemonSets)
	case "policy/v1 PodDisruptionBudget":
		return decodeInto(d, &m.PDBs)
	}
	return fmt.Errorf("%s %s: a kind the checks do not know: add it to Manifests", tm.APIVersion, tm.Kind)
}

// decodeInto decodes d strictly into a new T and appends it to list.
func decodeInto[T any](d []byte, list *[]*T) error {
	obj := new(T)
	if err := yaml.UnmarshalStrict(d, obj); err != nil {
		var meta struct {
			Kind     string            `json:"kind"`
			Metadata metav1.ObjectMeta `json:"metadata"`
		}
		_ = yaml.Unmarshal(d, &meta)
		return fmt.Errorf("%s %s: %w", meta.Kind, meta.Metadata.Name, err)
	}
	*list = append(*list, obj)
	return nil
}
