package web

import (
	"embed"
	"html/template"

	"github.com/op25b/observatory/collector/dataset"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

//go:embed templates
var templateFS embed.FS

// pageNames are the pages; each is templates/<name>.html on the layout.
var pageNames = []string{"overview", "asn", "prefixes", "check", "result", "error"}

// allVerdicts are the verdicts the check page explains, in enum order.
var allVerdicts = append(shownVerdicts[:len(shownVerdicts):len(shownVerdicts)], pb.Verdict_VERDICT_INCONCLUSIVE)

// parsePages parses every page once per language, with that language's
// message lookup as the template functions t and tf, so that a page
// executes with no per-request set-up.
func parsePages() map[string]map[string]*template.Template {
	out := map[string]map[string]*template.Template{}
	for lang := range messages {
		out[lang] = map[string]*template.Template{}
		for _, page := range pageNames {
			t := template.New(page).Funcs(funcs(lang))
			t = template.Must(t.ParseFS(templateFS, "templates/layout.html", "templates/"+page+".html"))
			out[lang][page] = t
		}
	}
	return out
}

func funcs(lang string) template.FuncMap {
	return template.FuncMap{
		"t":   translator(lang),
		"tf":  translatorf(lang),
		"pct": pct,
		"verdicts": func() []string {
			var names []string
			for _, v := range allVerdicts {
				names = append(names, dataset.VerdictName(v))
			}
			return names
		},
	}
}
