package chart_test

import (
	"encoding/json"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chartutil"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/meshfed/meshfed/internal/dev/chart"
)

// freeForm are the values that hold Kubernetes objects or maps the chart passes
// through as they are: the schema leaves their keys open (it may still type them).
// Every other object in the schema refuses keys it does not name.
var freeForm = []string{
	"global", "podSecurityContext", "containerSecurityContext", "resources", "requests", "limits",
	"nodeSelector", "tolerations", "affinity", "annotations", "labels", "imagePullSecrets",
	"agents", // hub.console.agents: cluster → URL, checked per entry
}

// TestSchemaMatchesValues keeps values.schema.json and values.yaml one description of
// the chart's values: every key of values.yaml is in the schema and every key the
// schema names for meshfed's own objects is in values.yaml, each with a description;
// objects other than the free-form ones refuse unknown keys; and values.yaml's
// defaults are valid.
func TestSchemaMatchesValues(t *testing.T) {
	defaults, err := chartutil.ReadValuesFile(filepath.Join(chart.Dir(), "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(chart.Dir(), "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatalf("values.schema.json: %v", err)
	}
	if err := chartutil.ValidateAgainstSingleSchema(defaults, raw); err != nil {
		t.Errorf("values.yaml does not meet values.schema.json:\n%v", err)
	}
	resolve := func(node map[string]any) map[string]any {
		ref, ok := node["$ref"].(string)
		if !ok {
			return node
		}
		def, ok := strings.CutPrefix(ref, "#/definitions/")
		if !ok {
			t.Fatalf("values.schema.json: $ref %q: only #/definitions/NAME is used", ref)
		}
		target, ok := schema["definitions"].(map[string]any)[def].(map[string]any)
		if !ok {
			t.Fatalf("values.schema.json: $ref %q: no such definition", ref)
		}
		return target
	}
	description := func(node map[string]any) string {
		if d, ok := node["description"].(string); ok {
			return d
		}
		d, _ := resolve(node)["description"].(string)
		return d
	}
	var walk func(path string, value any, node map[string]any)
	walk = func(path string, value any, node map[string]any) {
		node = resolve(node)
		obj, ok := value.(map[string]any)
		if !ok {
			if items, ok := node["items"].(map[string]any); ok {
				list, _ := value.([]any)
				for _, v := range list {
					walk(path+"[]", v, items)
				}
			}
			return
		}
		props, _ := node["properties"].(map[string]any)
		closed := node["additionalProperties"] == false
		name := path[strings.LastIndex(path, ".")+1:]
		if !closed && path != "" && !slices.Contains(freeForm, name) {
			t.Errorf("values.schema.json: %s is meshfed's own object: give it additionalProperties: false", path)
		}
		for _, key := range slices.Sorted(maps.Keys(obj)) {
			p := strings.TrimPrefix(path+"."+key, ".")
			switch sub, ok := props[key].(map[string]any); {
			case ok:
				if description(sub) == "" {
					t.Errorf("values.schema.json: %s has no description: take it from values.yaml's comment", p)
				}
				walk(p, obj[key], sub)
			case closed:
				t.Errorf("values.yaml has %s, values.schema.json does not: add it to the schema", p)
			default:
				if extra, ok := node["additionalProperties"].(map[string]any); ok {
					walk(p, obj[key], extra)
				}
			}
		}
		if closed {
			for _, key := range slices.Sorted(maps.Keys(props)) {
				if _, ok := obj[key]; !ok && !(path == "" && key == "global") {
					t.Errorf("values.schema.json has %s, values.yaml does not: add it with its default and comment, or drop it from the schema",
						strings.TrimPrefix(path+"."+key, "."))
				}
			}
		}
	}
	walk("", map[string]any(defaults), schema)

	// Every value a template reads is in values.yaml (so the schema allows it).
	err = filepath.WalkDir(filepath.Join(chart.Dir(), "templates"), func(f string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		text, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		for _, ref := range valuesRef.FindAllString(string(text), -1) {
			var v any = map[string]any(defaults)
			for _, key := range strings.Split(strings.TrimPrefix(ref, ".Values."), ".") {
				m, _ := v.(map[string]any)
				next, ok := m[key]
				if !ok {
					t.Errorf("%s reads %s, which values.yaml lacks", f, ref)
					break
				}
				v = next
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

var valuesRef = regexp.MustCompile(`\.Values(\.[A-Za-z0-9_]+)+`)

// TestSchemaRefusesBadValues: a misspelled key at any level, a wrong type, a value
// outside a closed set or a malformed digest, quantity, duration or name is refused by
// both rendering (what helm install, upgrade and template do) and helm lint, with an
// error naming the bad value's path.
func TestSchemaRefusesBadValues(t *testing.T) {
	for name, tc := range map[string]struct {
		values map[string]any
		want   string // in the error: the path (and the key, for a key the schema lacks)
	}{
		"typo at the top":      {map[string]any{"logformat": "text"}, "at '': additional properties 'logformat'"},
		"typo in hub":          {map[string]any{"hub": map[string]any{"meshCa": true}}, "at '/hub': additional properties 'meshCa'"},
		"typo in agent":        {map[string]any{"agent": map[string]any{"replica": 3}}, "at '/agent': additional properties 'replica'"},
		"typo in a service":    {map[string]any{"gateway": map[string]any{"service": map[string]any{"typ": "NodePort"}}}, "at '/gateway/service': additional properties 'typ'"},
		"annotations on agent": {map[string]any{"agent": map[string]any{"service": map[string]any{"annotations": map[string]any{"a": "b"}}}}, "at '/agent/service': additional properties 'annotations'"},
		"console agent without a URL": {map[string]any{"hub": map[string]any{"console": map[string]any{"agents": map[string]any{"alpha": "127.0.0.1:9094"}}}},
			"/hub/console/agents/alpha"},
		"typo deep in etcd": {map[string]any{"hub": map[string]any{"etcd": map[string]any{"persistence": map[string]any{"sise": "10Gi"}}}},
			"at '/hub/etcd/persistence': additional properties 'sise'"},
		"typo in external etcd": {map[string]any{"hub": map[string]any{"etcd": map[string]any{"external": map[string]any{"endpoint": []any{"https://e:2379"}}}}},
			"at '/hub/etcd/external': additional properties 'endpoint'"},
		"typo in image":          {map[string]any{"image": map[string]any{"pullpolicy": "Always"}}, "at '/image': additional properties 'pullpolicy'"},
		"replicas as a string":   {map[string]any{"agent": map[string]any{"replicas": "3"}}, "at '/agent/replicas': got string, want integer"},
		"replicas zero":          {map[string]any{"gateway": map[string]any{"replicas": 0}}, "at '/gateway/replicas'"},
		"replicas fractional":    {map[string]any{"hub": map[string]any{"replicas": 1.5}}, "at '/hub/replicas'"},
		"enabled as a string":    {map[string]any{"hub": map[string]any{"enabled": "true"}}, "at '/hub/enabled': got string, want boolean"},
		"flag instead of object": {map[string]any{"networkPolicy": false}, "at '/networkPolicy': got boolean, want object"},
		"extraArgs as a string":  {map[string]any{"hub": map[string]any{"extraArgs": "--leader-elect"}}, "at '/hub/extraArgs': got string, want array"},
		"negative quota":         {map[string]any{"hub": map[string]any{"etcd": map[string]any{"quotaBytes": -1}}}, "at '/hub/etcd/quotaBytes'"},
		"bad logFormat":          {map[string]any{"logFormat": "yaml"}, "at '/logFormat'"},
		"bad service type":       {map[string]any{"gateway": map[string]any{"service": map[string]any{"type": "ExternalName"}}}, "at '/gateway/service/type'"},
		"bad pullPolicy":         {map[string]any{"image": map[string]any{"pullPolicy": "IfNotPresnt"}}, "at '/image/pullPolicy'"},
		"digest a tag":           {map[string]any{"image": map[string]any{"digest": "latest"}}, "at '/image/digest'"},
		"digest too short":       {map[string]any{"image": map[string]any{"digest": "sha256:abc123"}}, "at '/image/digest'"},
		"digest uppercase":       {map[string]any{"image": map[string]any{"digest": "sha256:" + strings.Repeat("AB", 32)}}, "at '/image/digest'"},
		"tag in repository":      {map[string]any{"image": map[string]any{"repository": "ghcr.io/meshfed/meshfed:v1"}}, "at '/image/repository'"},
		"bad memory limit": {map[string]any{"agent": map[string]any{"resources": map[string]any{"limits": map[string]any{"memory": "1Gb"}}}},
			"at '/agent/resources/limits/memory'"},
		"bad volume size":       {map[string]any{"hub": map[string]any{"etcd": map[string]any{"persistence": map[string]any{"size": "8 GiB"}}}}, "at '/hub/etcd/persistence/size'"},
		"bad scrape interval":   {map[string]any{"serviceMonitor": map[string]any{"interval": "30 seconds"}}, "at '/serviceMonitor/interval'"},
		"etcd URL sans scheme":  {map[string]any{"hub": map[string]any{"etcd": map[string]any{"advertiseURLs": []any{"etcd.example.com:2379"}}}}, "at '/hub/etcd/advertiseURLs/0'"},
		"bad Secret name":       {map[string]any{"gateway": map[string]any{"xdsCertSecret": "Gateway_Certs"}}, "at '/gateway/xdsCertSecret'"},
		"annotation not string": {map[string]any{"hub": map[string]any{"service": map[string]any{"annotations": map[string]any{"a": 1}}}}, "at '/hub/service/annotations/a'"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := chart.Render(chart.Dir(), tc.values)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Render = %v, want an error saying %q", err, tc.want)
			}
			if err := chart.Lint(chart.Dir(), tc.values); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Lint = %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// TestSchemaQuantityIsKubernetes: the schema's quantity pattern accepts what the API
// server parses as a quantity and refuses what it does not; it is stricter only on
// negative quantities (no size, request or limit may be one) and on a bare suffix.
func TestSchemaQuantityIsKubernetes(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chart.Dir(), "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Definitions map[string]struct{ Pattern string } `json:"definitions"`
	}
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	pattern := regexp.MustCompile(schema.Definitions["quantity"].Pattern)
	for _, q := range []string{"0", "1", "+1", "100m", "0.5", ".5", "1.", "250Mi", "1Gi", "8Gi", "2Ti", "1Ei", "1k", "1M", "1G", "1E",
		"1e3", "1E3", "1e-3", "1n", "1u", "1Gb", "1gi", "8 GiB", "1.5.2", "", "1KiB", "1mi", "0x10", "1e", "1i"} {
		_, err := resource.ParseQuantity(q)
		if got, want := pattern.MatchString(q), err == nil; got != want {
			t.Errorf("quantity %q: schema accepts it: %v, Kubernetes parses it: %v", q, got, want)
		}
	}
	for _, q := range []string{"-1", "-100m", "Gi", "m"} {
		if pattern.MatchString(q) {
			t.Errorf("quantity %q: the schema accepts it", q)
		}
	}
}
