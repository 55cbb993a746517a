package deployments_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// overlay is the kustomization the tests render: the base plus the example Secrets.
const overlay = "kubernetes/example"

// namespace is where the base puts every object.
const namespace = "gatehouse"

// The parts of Kubernetes objects the tests read (field names as in the Kubernetes API).
type (
	objectMeta struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	}
	object struct {
		APIVersion string          `json:"apiVersion"`
		Kind       string          `json:"kind"`
		Metadata   objectMeta      `json:"metadata"`
		Data       map[string]any  `json:"data"`
		StringData map[string]any  `json:"stringData"`
		Spec       json.RawMessage `json:"spec"`
	}
	labelSelector struct {
		MatchLabels map[string]string `json:"matchLabels"`
	}
	workloadSpec struct {
		Replicas             *int          `json:"replicas"`
		ServiceName          string        `json:"serviceName"`
		Selector             labelSelector `json:"selector"`
		Template             podTemplate   `json:"template"`
		VolumeClaimTemplates []struct {
			Metadata objectMeta `json:"metadata"`
		} `json:"volumeClaimTemplates"`
	}
	podTemplate struct {
		Metadata objectMeta `json:"metadata"`
		Spec     podSpec    `json:"spec"`
	}
	podSpec struct {
		TerminationGracePeriodSeconds *int            `json:"terminationGracePeriodSeconds"`
		SecurityContext               securityContext `json:"securityContext"`
		InitContainers                []container     `json:"initContainers"`
		Containers                    []container     `json:"containers"`
		Volumes                       []struct {
			Name      string `json:"name"`
			ConfigMap *struct {
				Name string `json:"name"`
			} `json:"configMap"`
			Secret *struct {
				SecretName string `json:"secretName"`
			} `json:"secret"`
		} `json:"volumes"`
	}
	securityContext struct {
		RunAsNonRoot             *bool `json:"runAsNonRoot"`
		RunAsUser                *int  `json:"runAsUser"`
		ReadOnlyRootFilesystem   *bool `json:"readOnlyRootFilesystem"`
		AllowPrivilegeEscalation *bool `json:"allowPrivilegeEscalation"`
		Capabilities             struct {
			Drop []string `json:"drop"`
		} `json:"capabilities"`
		SeccompProfile struct {
			Type string `json:"type"`
		} `json:"seccompProfile"`
	}
	container struct {
		Name    string   `json:"name"`
		Image   string   `json:"image"`
		Command []string `json:"command"`
		Args    []string `json:"args"`
		Env     []struct {
			Name      string `json:"name"`
			Value     string `json:"value"`
			ValueFrom *struct {
				SecretKeyRef    *keyRef `json:"secretKeyRef"`
				ConfigMapKeyRef *keyRef `json:"configMapKeyRef"`
				FieldRef        *struct {
					FieldPath string `json:"fieldPath"`
				} `json:"fieldRef"`
			} `json:"valueFrom"`
		} `json:"env"`
		EnvFrom []struct {
			ConfigMapRef *struct {
				Name string `json:"name"`
			} `json:"configMapRef"`
			SecretRef *struct {
				Name string `json:"name"`
			} `json:"secretRef"`
		} `json:"envFrom"`
		Ports []struct {
			Name          string `json:"name"`
			ContainerPort int    `json:"containerPort"`
		} `json:"ports"`
		ReadinessProbe *probe `json:"readinessProbe"`
		LivenessProbe  *probe `json:"livenessProbe"`
		StartupProbe   *probe `json:"startupProbe"`
		Lifecycle      *struct {
			PreStop *struct {
				Exec *struct {
					Command []string `json:"command"`
				} `json:"exec"`
			} `json:"preStop"`
		} `json:"lifecycle"`
		Resources struct {
			Requests map[string]string `json:"requests"`
		} `json:"resources"`
		SecurityContext securityContext `json:"securityContext"`
		VolumeMounts    []struct {
			Name      string `json:"name"`
			MountPath string `json:"mountPath"`
		} `json:"volumeMounts"`
	}
	keyRef struct {
		Name string `json:"name"`
		Key  string `json:"key"`
	}
	probe struct {
		HTTPGet *struct {
			Path string `json:"path"`
			Port any    `json:"port"` // a number or a port name
		} `json:"httpGet"`
	}
	serviceSpec struct {
		ClusterIP                string            `json:"clusterIP"`
		PublishNotReadyAddresses bool              `json:"publishNotReadyAddresses"`
		Selector                 map[string]string `json:"selector"`
		Ports                    []struct {
			Name       string `json:"name"`
			Port       int    `json:"port"`
			TargetPort any    `json:"targetPort"`
		} `json:"ports"`
	}
	hpaSpec struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicas *int `json:"minReplicas"`
		MaxReplicas int  `json:"maxReplicas"`
		Metrics     []struct {
			Type     string `json:"type"`
			Resource *struct {
				Name string `json:"name"`
			} `json:"resource"`
		} `json:"metrics"`
	}
	pdbSpec struct {
		MinAvailable   any           `json:"minAvailable"`
		MaxUnavailable any           `json:"maxUnavailable"`
		Selector       labelSelector `json:"selector"`
	}
)

// manifests is a rendered kustomization.
type manifests []object

// renderKustomization builds the kustomization in dir as `kustomize build` (and kubectl apply -k)
// would.
func renderKustomization(t *testing.T, dir string) manifests {
	t.Helper()
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var out manifests
	for _, r := range resources.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		var o object
		if err := yaml.Unmarshal(y, &o); err != nil {
			t.Fatalf("%s: %v", r.CurId(), err)
		}
		out = append(out, o)
	}
	return out
}

func (m manifests) ofKind(kind string) []object {
	var out []object
	for _, o := range m {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

func (m manifests) get(t *testing.T, kind, name string) object {
	t.Helper()
	for _, o := range m {
		if o.Kind == kind && o.Metadata.Name == name {
			return o
		}
	}
	t.Fatalf("no %s %q in the rendered manifests", kind, name)
	return object{}
}

// spec decodes o's spec into a value of type T.
func spec[T any](t *testing.T, o object) T {
	t.Helper()
	var s T
	if err := json.Unmarshal(o.Spec, &s); err != nil {
		t.Fatalf("%s %s spec: %v", o.Kind, o.Metadata.Name, err)
	}
	return s
}

// workload is a Deployment or StatefulSet and its decoded spec.
type workload struct {
	object
	spec workloadSpec
}

func (m manifests) workloads(t *testing.T) []workload {
	t.Helper()
	var out []workload
	for _, o := range m {
		if o.Kind == "Deployment" || o.Kind == "StatefulSet" {
			out = append(out, workload{o, spec[workloadSpec](t, o)})
		}
	}
	return out
}

func (m manifests) workload(t *testing.T, kind, name string) workload {
	t.Helper()
	o := m.get(t, kind, name)
	return workload{o, spec[workloadSpec](t, o)}
}

// data returns the keys and values of a ConfigMap or Secret (stringData over data).
func (o object) data() map[string]string {
	out := map[string]string{}
	for k, v := range o.Data {
		out[k] = fmt.Sprint(v)
	}
	for k, v := range o.StringData {
		out[k] = fmt.Sprint(v)
	}
	return out
}

// env resolves a container's environment: literal values, ConfigMap references (envFrom and
// configMapKeyRef) and Secret references, whose values are returned as found. It fails the test
// when a reference names a ConfigMap, Secret or key the manifests lack.
func (m manifests) env(t *testing.T, c container) map[string]string {
	t.Helper()
	out := map[string]string{}
	lookup := func(kind string, ref keyRef) string {
		t.Helper()
		v, ok := m.get(t, kind, ref.Name).data()[ref.Key]
		if !ok {
			t.Errorf("container %s: %s %s has no key %s", c.Name, kind, ref.Name, ref.Key)
		}
		return v
	}
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			maps.Copy(out, m.get(t, "ConfigMap", ef.ConfigMapRef.Name).data())
		case ef.SecretRef != nil:
			maps.Copy(out, m.get(t, "Secret", ef.SecretRef.Name).data())
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			out[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			out[e.Name] = lookup("Secret", *e.ValueFrom.SecretKeyRef)
		case e.ValueFrom.ConfigMapKeyRef != nil:
			out[e.Name] = lookup("ConfigMap", *e.ValueFrom.ConfigMapKeyRef)
		case e.ValueFrom.FieldRef != nil:
			out[e.Name] = "$(" + e.ValueFrom.FieldRef.FieldPath + ")"
		}
	}
	return out
}

// containerPort resolves a probe's or Service's port (a number, or a name) in containers.
func containerPort(t *testing.T, port any, containers ...container) int {
	t.Helper()
	switch p := port.(type) {
	case float64:
		return int(p)
	case string:
		if n, err := strconv.Atoi(p); err == nil {
			return n
		}
		for _, c := range containers {
			for _, cp := range c.Ports {
				if cp.Name == p {
					return cp.ContainerPort
				}
			}
		}
		t.Errorf("no container port named %q", p)
	default:
		t.Errorf("port %v (%T): neither a number nor a name", port, port)
	}
	return 0
}

// process names the Gatehouse binary an image runs, or "" for another image.
func process(image string) string {
	repo, _, _ := strings.Cut(image, ":")
	switch repo {
	case "gatehouse/management":
		return "management"
	case "gatehouse/gateway":
		return "gateway"
	}
	return ""
}

func containerByName(t *testing.T, w workload, name string) container {
	t.Helper()
	for _, c := range w.spec.Template.Spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("%s %s has no container %q", w.Kind, w.Metadata.Name, name)
	return container{}
}

func TestKubernetesObjects(t *testing.T) {
	t.Parallel()
	m := renderKustomization(t, overlay)

	got := map[string]int{}
	for _, o := range m {
		got[o.APIVersion+" "+o.Kind]++
		if o.Kind != "Namespace" && o.Metadata.Namespace != namespace {
			t.Errorf("%s %s is in namespace %q, want %q", o.Kind, o.Metadata.Name, o.Metadata.Namespace, namespace)
		}
	}
	want := map[string]int{
		"v1 Namespace":                           1,
		"v1 ConfigMap":                           3, // management and gateway settings, nats.conf
		"v1 Secret":                              4, // the example overlay's
		"v1 Service":                             4, // management, gateway, nats, nats-headless
		"apps/v1 Deployment":                     2,
		"apps/v1 StatefulSet":                    1,
		"autoscaling/v2 HorizontalPodAutoscaler": 1,
		"policy/v1 PodDisruptionBudget":          3,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rendered kinds (-want +got):\n%s", diff)
	}
	ns := m.get(t, "Namespace", namespace)
	if got := ns.Metadata.Labels["pod-security.kubernetes.io/enforce"]; got != "restricted" {
		t.Errorf("namespace enforces Pod Security %q, want restricted", got)
	}

	// The base alone renders too (it is what an overlay with real Secrets builds on), without Secrets.
	if base := renderKustomization(t, "kubernetes/base"); len(base.ofKind("Secret")) != 0 {
		t.Errorf("the base renders Secrets; they belong in an overlay")
	}
}

// TestKubernetesPodSecurity checks every container, init containers included, against the
// "restricted" Pod Security Standard the namespace enforces, plus a read-only root filesystem.
func TestKubernetesPodSecurity(t *testing.T) {
	t.Parallel()
	m := renderKustomization(t, overlay)
	for _, w := range m.workloads(t) {
		pod := w.spec.Template.Spec
		for _, c := range slices.Concat(pod.InitContainers, pod.Containers) {
			t.Run(w.Metadata.Name+"/"+c.Name, func(t *testing.T) {
				sc := c.SecurityContext
				if !pick(sc.RunAsNonRoot, pod.SecurityContext.RunAsNonRoot, false) {
					t.Error("runAsNonRoot is not true")
				}
				if uid := pick(sc.RunAsUser, pod.SecurityContext.RunAsUser, 0); uid == 0 {
					t.Error("runAsUser is unset or 0: the pod would rely on the image, or run as root")
				}
				if !pick(sc.ReadOnlyRootFilesystem, nil, false) {
					t.Error("readOnlyRootFilesystem is not true")
				}
				if pick(sc.AllowPrivilegeEscalation, nil, true) {
					t.Error("allowPrivilegeEscalation is not false")
				}
				if !slices.Contains(sc.Capabilities.Drop, "ALL") {
					t.Errorf("capabilities drop %q, want ALL", sc.Capabilities.Drop)
				}
				if sc.SeccompProfile.Type != "RuntimeDefault" && pod.SecurityContext.SeccompProfile.Type != "RuntimeDefault" {
					t.Error("no RuntimeDefault seccomp profile")
				}
				if _, tag, ok := strings.Cut(c.Image, ":"); !ok || tag == "latest" {
					t.Errorf("image %q is not pinned to a tag", c.Image)
				}
			})
		}
	}
}

// pick returns the container's setting, else the pod's, else def.
func pick[T any](container, pod *T, def T) T {
	if container != nil {
		return *container
	}
	if pod != nil {
		return *pod
	}
	return def
}

// readByBinary lists the variables of env meant for the process: those no other value refers
// to as $(NAME), Kubernetes' dependent-variable expansion (POD_IP feeding GATEWAY_PUBLIC_URL).
func readByBinary(env map[string]string) []string {
	var names []string
	for name := range env {
		helper := false
		for _, v := range env {
			helper = helper || strings.Contains(v, "$("+name+")")
		}
		if !helper {
			names = append(names, name)
		}
	}
	return names
}

// TestKubernetesEnv checks that the Gatehouse containers set only variables their binary reads,
// that every ConfigMap and Secret they reference exists with the key, and that every directory
// a process writes to is a volume on the read-only root filesystem.
func TestKubernetesEnv(t *testing.T) {
	t.Parallel()
	m := renderKustomization(t, overlay)
	for _, w := range m.workloads(t) {
		pod := w.spec.Template.Spec
		for _, c := range slices.Concat(pod.InitContainers, pod.Containers) {
			t.Run(w.Metadata.Name+"/"+c.Name, func(t *testing.T) {
				env := m.env(t, c)
				p := process(c.Image)
				if p == "" {
					if !strings.HasPrefix(c.Image, "nats:") {
						t.Fatalf("image %q is neither Gatehouse's nor NATS's", c.Image)
					}
					return
				}
				checkEnvNames(t, w.Metadata.Name+"/"+c.Name, p, readByBinary(env))
				if dir, ok := env["GATEWAY_CACHE_DIR"]; ok {
					var mounts []string
					for _, vm := range c.VolumeMounts {
						mounts = append(mounts, vm.MountPath)
					}
					if !under(dir, mounts) {
						t.Errorf("GATEWAY_CACHE_DIR %s is not on a volume (mounts %q)", dir, mounts)
					}
				}
			})
		}
		for _, v := range pod.Volumes {
			if v.ConfigMap != nil {
				m.get(t, "ConfigMap", v.ConfigMap.Name)
			}
			if v.Secret != nil {
				m.get(t, "Secret", v.Secret.SecretName)
			}
		}
	}
	// Management's containers get the server's settings; the gateway its token.
	mgmt := m.env(t, containerByName(t, m.workload(t, "Deployment", "management"), "management"))
	for _, name := range []string{"DATABASE_URL", "NATS_URL", "MANAGEMENT_LISTEN", "MANAGEMENT_ADMIN_TOKEN", "MANAGEMENT_ENCRYPTION_KEY"} {
		if mgmt[name] == "" {
			t.Errorf("management: %s is unset or empty", name)
		}
	}
	if gw := m.env(t, containerByName(t, m.workload(t, "Deployment", "gateway"), "gateway")); gw["GATEWAY_TOKEN"] == "" {
		t.Error("gateway: GATEWAY_TOKEN is unset or empty")
	}
}

func TestKubernetesProbes(t *testing.T) {
	t.Parallel()
	m := renderKustomization(t, overlay)
	tests := []struct {
		deployment, probe, path, listenVar string
	}{
		{"management", "readiness", "/readyz", "MANAGEMENT_LISTEN"},
		{"management", "liveness", "/healthz", "MANAGEMENT_LISTEN"},
		{"gateway", "readiness", "/readyz", "GATEWAY_ADMIN_LISTEN"},
		{"gateway", "liveness", "/healthz", "GATEWAY_ADMIN_LISTEN"},
	}
	for _, tc := range tests {
		t.Run(tc.deployment+"/"+tc.probe, func(t *testing.T) {
			t.Parallel()
			c := containerByName(t, m.workload(t, "Deployment", tc.deployment), tc.deployment)
			p := map[string]*probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe}[tc.probe]
			if p == nil || p.HTTPGet == nil {
				t.Fatalf("no HTTP %s probe", tc.probe)
			}
			if p.HTTPGet.Path != tc.path {
				t.Errorf("%s probe path %q, want %q", tc.probe, p.HTTPGet.Path, tc.path)
			}
			listen := m.env(t, c)[tc.listenVar]
			if got, want := containerPort(t, p.HTTPGet.Port, c), listenPort(t, listen); got != want {
				t.Errorf("%s probe port %d, but %s=%s", tc.probe, got, tc.listenVar, listen)
			}
		})
	}
}

// TestKubernetesShutdown checks that each pod's preStop sleep (the time for its endpoint to leave
// every Service before SIGTERM) plus the process's own shutdown budget fit in the grace period, so
// the gateway's drain ends before the kubelet's SIGKILL.
func TestKubernetesShutdown(t *testing.T) {
	t.Parallel()
	m := renderKustomization(t, overlay)
	tests := []struct {
		name   string
		budget func(env map[string]string) time.Duration
	}{
		{"gateway", func(env map[string]string) time.Duration {
			d, err := time.ParseDuration(env["GATEWAY_DRAIN_TIMEOUT"])
			if err != nil {
				t.Errorf("GATEWAY_DRAIN_TIMEOUT: %v", err)
			}
			return d
		}},
		{"management", func(map[string]string) time.Duration { return managementShutdownBudget * time.Second }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := m.workload(t, "Deployment", tc.name)
			c := containerByName(t, w, tc.name)
			if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Exec == nil {
				t.Fatal("no preStop exec hook")
			}
			cmd := c.Lifecycle.PreStop.Exec.Command
			if len(cmd) != 2 || cmd[0] != "sleep" {
				t.Fatalf("preStop %q, want [sleep N]", cmd)
			}
			sleep, err := strconv.Atoi(cmd[1])
			if err != nil || sleep <= 0 {
				t.Fatalf("preStop sleeps %q", cmd[1])
			}
			grace := 30 // Kubernetes' default
			if g := w.spec.Template.Spec.TerminationGracePeriodSeconds; g != nil {
				grace = *g
			}
			need := time.Duration(sleep)*time.Second + tc.budget(m.env(t, c))
			if time.Duration(grace)*time.Second <= need {
				t.Errorf("terminationGracePeriodSeconds %d does not exceed preStop %ds + shutdown budget = %s", grace, sleep, need)
			}
		})
	}
}

func TestKubernetesGatewayAutoscaling(t *testing.T) {
	t.Parallel()
	m := renderKustomization(t, overlay)
	hpas := m.ofKind("HorizontalPodAutoscaler")
	if len(hpas) != 1 {
		t.Fatalf("%d HorizontalPodAutoscalers, want 1", len(hpas))
	}
	h := hpas[0]
	if h.APIVersion != "autoscaling/v2" {
		t.Errorf("HPA apiVersion %s, want autoscaling/v2", h.APIVersion)
	}
	s := spec[hpaSpec](t, h)
	ref := s.ScaleTargetRef
	if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != "gateway" {
		t.Errorf("HPA targets %s %s %s, want apps/v1 Deployment gateway", ref.APIVersion, ref.Kind, ref.Name)
	}
	target := m.workload(t, ref.Kind, ref.Name)
	if target.spec.Replicas != nil {
		t.Errorf("Deployment %s sets replicas %d: every apply would reset what the HPA chose", ref.Name, *target.spec.Replicas)
	}
	if s.MinReplicas == nil || *s.MinReplicas < 2 || *s.MinReplicas > s.MaxReplicas {
		t.Errorf("HPA min %s max %d: want at least 2 gateways and min <= max", jsonString(s.MinReplicas), s.MaxReplicas)
	}
	var cpu bool
	for _, metric := range s.Metrics {
		cpu = cpu || metric.Type == "Resource" && metric.Resource != nil && metric.Resource.Name == "cpu"
	}
	if !cpu {
		t.Error("HPA does not scale on CPU")
	}
	for _, c := range target.spec.Template.Spec.Containers {
		if c.Resources.Requests["cpu"] == "" {
			t.Errorf("container %s requests no CPU, so a CPU utilization target means nothing", c.Name)
		}
	}
}

// TestKubernetesSelectors checks that each PodDisruptionBudget and Service selects the pods of
// exactly one workload, that Services target ports those pods have, and that every workload of
// more than one pod has a PodDisruptionBudget that still lets one pod go.
func TestKubernetesSelectors(t *testing.T) {
	t.Parallel()
	m := renderKustomization(t, overlay)
	workloads := m.workloads(t)
	selected := func(t *testing.T, sel map[string]string) workload {
		t.Helper()
		var hits []workload
		for _, w := range workloads {
			if len(sel) > 0 && isSubset(sel, w.spec.Template.Metadata.Labels) {
				hits = append(hits, w)
			}
		}
		if len(hits) != 1 {
			t.Fatalf("selector %v selects %d workloads, want 1", sel, len(hits))
		}
		return hits[0]
	}
	hpaMin := map[string]int{}
	for _, h := range m.ofKind("HorizontalPodAutoscaler") {
		s := spec[hpaSpec](t, h)
		if s.MinReplicas != nil {
			hpaMin[s.ScaleTargetRef.Name] = *s.MinReplicas
		}
	}
	var protected []string
	for _, pdb := range m.ofKind("PodDisruptionBudget") {
		t.Run("PodDisruptionBudget/"+pdb.Metadata.Name, func(t *testing.T) {
			s := spec[pdbSpec](t, pdb)
			w := selected(t, s.Selector.MatchLabels)
			protected = append(protected, w.Metadata.Name)
			pods := hpaMin[w.Metadata.Name]
			if w.spec.Replicas != nil {
				pods = *w.spec.Replicas
			}
			if n, ok := s.MinAvailable.(float64); ok && int(n) >= pods {
				t.Errorf("minAvailable %d of %d pods: no pod may ever be evicted", int(n), pods)
			}
			if n, ok := s.MaxUnavailable.(float64); ok && n < 1 {
				t.Errorf("maxUnavailable %v: no pod may ever be evicted", n)
			}
		})
	}
	for _, w := range workloads {
		if (w.spec.Replicas != nil && *w.spec.Replicas > 1) || hpaMin[w.Metadata.Name] > 1 {
			if !slices.Contains(protected, w.Metadata.Name) {
				t.Errorf("%s %s runs several pods but has no PodDisruptionBudget", w.Kind, w.Metadata.Name)
			}
		}
		if !isSubset(w.spec.Selector.MatchLabels, w.spec.Template.Metadata.Labels) {
			t.Errorf("%s %s: selector %v does not match its own pods", w.Kind, w.Metadata.Name, w.spec.Selector.MatchLabels)
		}
	}
	for _, svc := range m.ofKind("Service") {
		t.Run("Service/"+svc.Metadata.Name, func(t *testing.T) {
			s := spec[serviceSpec](t, svc)
			w := selected(t, s.Selector)
			for _, p := range s.Ports {
				if containerPort(t, p.TargetPort, w.spec.Template.Spec.Containers...) == 0 {
					t.Errorf("port %s targets %v, which the pods of %s do not have", p.Name, p.TargetPort, w.Metadata.Name)
				}
			}
		})
	}
	// The gateway Service's traffic port reaches the traffic listener, not the admin one.
	gw := m.workload(t, "Deployment", "gateway")
	gwc := containerByName(t, gw, "gateway")
	for _, p := range spec[serviceSpec](t, m.get(t, "Service", "gateway")).Ports {
		if p.Name == "traffic" && containerPort(t, p.TargetPort, gwc) != listenPort(t, m.env(t, gwc)["GATEWAY_LISTEN"]) {
			t.Errorf("Service gateway port traffic targets %v, not GATEWAY_LISTEN", p.TargetPort)
		}
	}
}

// mountOf returns the mount path among mounts that holds file, the deepest one, or "".
func mountOf(file string, mounts []string) string {
	best := ""
	for _, m := range mounts {
		if under(file, []string{m}) && len(m) > len(best) {
			best = m
		}
	}
	return best
}

// jsonString renders v as JSON, for messages about optional fields.
func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func isSubset(sub, set map[string]string) bool {
	for k, v := range sub {
		if set[k] != v {
			return false
		}
	}
	return true
}

// TestKubernetesNATS reads the NATS StatefulSet's configuration as nats-server does for each of
// its pods. It does not run in parallel (natsOptions).
func TestKubernetesNATS(t *testing.T) {
	m := renderKustomization(t, overlay)
	sts := m.workload(t, "StatefulSet", "nats")
	if sts.spec.Replicas == nil || *sts.spec.Replicas != 3 {
		t.Fatalf("nats replicas %s, want 3", jsonString(sts.spec.Replicas))
	}
	headless := spec[serviceSpec](t, m.get(t, "Service", sts.spec.ServiceName))
	if headless.ClusterIP != "None" || !headless.PublishNotReadyAddresses {
		t.Errorf("Service %s: clusterIP %q publishNotReadyAddresses %v, want a headless Service that publishes pods before they are ready",
			sts.spec.ServiceName, headless.ClusterIP, headless.PublishNotReadyAddresses)
	}
	c := containerByName(t, sts, "nats")
	mounts := map[string]string{} // mount path → volume
	for _, vm := range c.VolumeMounts {
		mounts[vm.MountPath] = vm.Name
	}
	mountPaths := slices.Collect(maps.Keys(mounts))
	claims := map[string]bool{}
	for _, vct := range sts.spec.VolumeClaimTemplates {
		claims[vct.Metadata.Name] = true
	}
	confMaps := map[string]string{} // volume → ConfigMap
	for _, v := range sts.spec.Template.Spec.Volumes {
		if v.ConfigMap != nil {
			confMaps[v.Name] = v.ConfigMap.Name
		}
	}

	// The configuration file comes from the ConfigMap mounted over its folder.
	args := slices.Concat(c.Command[1:], c.Args)
	confPath := args[slices.Index(args, "--config")+1]
	cm, ok := confMaps[mounts[path.Dir(confPath)]]
	if !ok {
		t.Fatalf("--config %s is not in a ConfigMap volume", confPath)
	}
	conf, ok := m.get(t, "ConfigMap", cm).data()[path.Base(confPath)]
	if !ok {
		t.Fatalf("ConfigMap %s has no %s", cm, path.Base(confPath))
	}

	var peers []string
	for i := range *sts.spec.Replicas {
		peers = append(peers, fmt.Sprintf("nats-%d.%s", i, sts.spec.ServiceName))
	}
	for i := range *sts.spec.Replicas {
		pod := fmt.Sprintf("nats-%d", i)
		podArgs := slices.Clone(args)
		for j, a := range podArgs {
			podArgs[j] = strings.ReplaceAll(a, "$(POD_NAME)", pod)
		}
		opts := natsOptions(t, podArgs, conf)
		checkNATSNode(t, opts, pod, peers)
		if !claims[mounts[mountOf(opts.StoreDir, mountPaths)]] {
			t.Errorf("%s: JetStream store_dir %s is not on a persistent volume claim", pod, opts.StoreDir)
		}
		if opts.PidFile != "" && mountOf(opts.PidFile, mountPaths) == "" {
			t.Errorf("%s: pid_file %s is not on a volume (read-only root filesystem)", pod, opts.PidFile)
		}
		for name, want := range map[string]int{"client": opts.Port, "cluster": opts.Cluster.Port, "monitor": opts.HTTPPort} {
			if got := containerPort(t, name, c); got != want {
				t.Errorf("%s: container port %s is %d, nats-server listens on %d", pod, name, got, want)
			}
		}
		if i > 0 {
			continue
		}
		// Pod-independent: the lame-duck preStop hook and the probes.
		if pre := c.Lifecycle; opts.PidFile == "" || pre == nil || pre.PreStop == nil || pre.PreStop.Exec == nil ||
			!slices.ContainsFunc(pre.PreStop.Exec.Command, func(a string) bool { return strings.HasSuffix(a, "ldm="+opts.PidFile) }) {
			t.Errorf("no preStop hook signals lame-duck mode through the pid_file %q", opts.PidFile)
		}
		for name, p := range map[string]*probe{"startup": c.StartupProbe, "readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
			if p == nil || p.HTTPGet == nil || !strings.HasPrefix(p.HTTPGet.Path, "/healthz") || containerPort(t, p.HTTPGet.Port, c) != opts.HTTPPort {
				t.Errorf("nats %s probe is not an HTTP /healthz check on the monitoring port %d", name, opts.HTTPPort)
			}
		}
	}
}
