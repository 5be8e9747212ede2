package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"time"
)

//go:embed static
var staticFS embed.FS

// staticFiles serves the embedded CSS, JavaScript and icon. Pages link them
// with a content hash in the query (?v=), so a URL can be cached for good:
// a new build changes the hash.
type staticFiles struct {
	files map[string]staticFile
}

type staticFile struct {
	body []byte
	hash string
}

func loadStatic() *staticFiles {
	s := &staticFiles{files: map[string]staticFile{}}
	entries, err := fs.ReadDir(staticFS, "static")
	if err != nil {
		panic(err) // embedded at build time: cannot happen
	}
	for _, e := range entries {
		body, err := staticFS.ReadFile("static/" + e.Name())
		if err != nil {
			panic(err)
		}
		sum := sha256.Sum256(body)
		s.files[e.Name()] = staticFile{body: body, hash: hex.EncodeToString(sum[:6])}
	}
	return s
}

// url is the versioned URL of the static file name.
func (s *staticFiles) url(name string) string {
	return "/static/" + name + "?v=" + s.files[name].hash
}

func (s *staticFiles) serve(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	f, ok := s.files[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if r.URL.Query().Get("v") == f.hash {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	w.Header().Set("ETag", `"`+f.hash+`"`)
	// ServeContent picks the Content-Type from the extension and answers
	// conditional and range requests.
	http.ServeContent(w, r, path.Base(name), time.Time{}, bytes.NewReader(f.body))
}

// favicon answers browsers that ask for /favicon.ico whatever the page
// says, so that they log no failed request.
func (s *staticFiles) favicon(w http.ResponseWriter, r *http.Request) {
	f := s.files["icon.svg"]
	w.Header().Set("Cache-Control", "public, max-age=86400")
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Write(f.body)
}
