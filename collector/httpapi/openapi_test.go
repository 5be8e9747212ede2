package httpapi

import (
	"bytes"
	"encoding/json"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/op25b/observatory/collector/dataset"
	"github.com/op25b/observatory/collector/resultfile"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

type openAPIDoc struct {
	OpenAPI string `json:"openapi"`
	Paths   map[string]map[string]struct {
		Parameters []openAPIParam `json:"parameters"`
	} `json:"paths"`
	Components struct {
		Parameters map[string]openAPIParam `json:"parameters"`
		Schemas    map[string]struct {
			Properties map[string]json.RawMessage `json:"properties"`
			Enum       []string                   `json:"enum"`
		} `json:"schemas"`
	} `json:"components"`
}

type openAPIParam struct {
	Ref    string `json:"$ref"`
	Name   string `json:"name"`
	In     string `json:"in"`
	Schema struct {
		Enum []string `json:"enum"`
	} `json:"schema"`
}

func loadOpenAPI(t *testing.T) *openAPIDoc {
	t.Helper()
	var doc openAPIDoc
	dec := json.NewDecoder(bytes.NewReader(openAPI))
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1.") {
		t.Errorf("openapi.json is OpenAPI %q; want 3.1", doc.OpenAPI)
	}
	return &doc
}

func (d *openAPIDoc) param(t *testing.T, p openAPIParam) openAPIParam {
	if p.Ref == "" {
		return p
	}
	q, ok := d.Components.Parameters[strings.TrimPrefix(p.Ref, "#/components/parameters/")]
	if !ok {
		t.Errorf("openapi.json: parameter %s is not defined", p.Ref)
	}
	return q
}

// TestOpenAPIRoutes checks that the document describes what the mux serves:
// the same paths, methods and parameters.
func TestOpenAPIRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	served := map[string]map[string]bool{}
	for _, rt := range (&server{}).routes() {
		method, path, _ := strings.Cut(rt.pattern, " ")
		if served[path] == nil {
			served[path] = map[string]bool{}
		}
		served[path][strings.ToLower(method)] = true
		op, ok := doc.Paths[path][strings.ToLower(method)]
		if !ok {
			t.Errorf("%s is served but not documented", rt.pattern)
			continue
		}
		var query, inPath []string
		for _, p := range op.Parameters {
			switch p := doc.param(t, p); p.In {
			case "query":
				query = append(query, p.Name)
			case "path":
				inPath = append(inPath, p.Name)
			default:
				t.Errorf("%s: parameter %s in %q", rt.pattern, p.Name, p.In)
			}
		}
		if want := slices.Sorted(slices.Values(rt.params)); !slices.Equal(slices.Sorted(slices.Values(query)), want) {
			t.Errorf("%s documents the query parameters %q; it takes %q", rt.pattern, query, want)
		}
		var wantPath []string
		for _, m := range regexp.MustCompile(`\{(\w+)\}`).FindAllStringSubmatch(path, -1) {
			wantPath = append(wantPath, m[1])
		}
		if !slices.Equal(inPath, wantPath) {
			t.Errorf("%s documents the path parameters %q; want %q", rt.pattern, inPath, wantPath)
		}
	}
	for path, ops := range doc.Paths {
		for method := range ops {
			if !served[path][method] {
				t.Errorf("%s %s is documented but not served", method, path)
			}
		}
	}
}

// TestOpenAPISchemas checks the components against the messages they
// describe, the enums, the export columns and the parameters' choices.
func TestOpenAPISchemas(t *testing.T) {
	doc := loadOpenAPI(t)
	schemas := doc.Components.Schemas
	for _, name := range []string{"ASNSummary", "PortStats", "Share", "TimelinePoint", "PolicyChange", "PeerGap", "CountrySummary", "EvidenceItem", "GetInfoResponse", "Error", "ExportRow",
		"GetPrefixesResponse", "PrefixSummary", "PrefixPort", "VerdictAgents", "PrefixDay", "PortVerdict"} {
		if _, ok := schemas[name]; !ok {
			t.Errorf("openapi.json has no schema %s", name)
		}
	}
	for name, s := range schemas {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName("op25b.v1." + name))
		if err != nil {
			continue
		}
		switch d := d.(type) {
		case protoreflect.MessageDescriptor:
			var fields []string
			for i := range d.Fields().Len() {
				fields = append(fields, string(d.Fields().Get(i).Name()))
			}
			if got := slices.Sorted(maps.Keys(s.Properties)); !slices.Equal(got, slices.Sorted(slices.Values(fields))) {
				t.Errorf("schema %s has properties %q; the message has %q", name, got, fields)
			}
		case protoreflect.EnumDescriptor:
			var values []string
			for i := range d.Values().Len() {
				values = append(values, string(d.Values().Get(i).Name()))
			}
			if !slices.Equal(s.Enum, values) {
				t.Errorf("schema %s lists %q; the enum has %q", name, s.Enum, values)
			}
		}
	}
	for _, name := range []string{"ASNSummary", "GetASNResponse", "GetPeersResponse", "ListASNsResponse", "ListCountriesResponse", "ListPolicyChangesResponse", "TimeRange", "AddressFamily", "Verdict", "PolicyClass"} {
		if _, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName("op25b.v1." + name)); err != nil {
			t.Errorf("schema %s names no op25b.v1 type: %v", name, err)
		}
	}
	if got := slices.Sorted(maps.Keys(schemas["ExportRow"].Properties)); !slices.Equal(got, slices.Sorted(slices.Values(resultfile.Columns))) {
		t.Errorf("schema ExportRow has %q; the export has the columns %q", got, resultfile.Columns)
	}
	if got := doc.Components.Parameters["Class"].Schema.Enum; !slices.Equal(got, dataset.ClassNames()) {
		t.Errorf("parameter class lists %q; want %q", got, dataset.ClassNames())
	}
	if got := doc.Components.Parameters["ExportFormat"].Schema.Enum; !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(maps.Keys(exportFormats))) {
		t.Errorf("parameter format lists %q; the export has %q", got, slices.Sorted(maps.Keys(exportFormats)))
	}
	var fam []string
	for _, f := range []pb.AddressFamily{v4, v6} {
		fam = append(fam, dataset.FamilyName(f))
	}
	if got := doc.Components.Parameters["Family"].Schema.Enum; !slices.Equal(got, fam) {
		t.Errorf("parameter family lists %q; want %q", got, fam)
	}
}

// TestOpenAPIRefs checks that every $ref of the document resolves.
func TestOpenAPIRefs(t *testing.T) {
	var root any
	if err := json.Unmarshal(openAPI, &root); err != nil {
		t.Fatal(err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				target := root
				for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
					m, _ := target.(map[string]any)
					target = m[part]
				}
				if target == nil || !strings.HasPrefix(ref, "#/") {
					t.Errorf("openapi.json: $ref %q does not resolve", ref)
				}
			}
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(root)
}

func TestOpenAPIServed(t *testing.T) {
	w := get(newHandler(&fake{}, Options{}), "/api/v1/openapi.json")
	if w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), openAPI) || w.Header().Get("Content-Type") != "application/json; charset=utf-8" {
		t.Errorf("GET /api/v1/openapi.json = %d %q with %d bytes; want 200 JSON with the embedded document", w.Code, w.Header().Get("Content-Type"), w.Body.Len())
	}
}
