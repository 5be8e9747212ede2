package httpapi

import (
	_ "embed"
	"net/http"
	"strconv"
)

// openAPI describes every route of the API; a test keeps the two in step.
//
//go:embed openapi.json
var openAPI []byte

func serveOpenAPI(w http.ResponseWriter, r *http.Request, q *query) error {
	h := w.Header()
	h.Set("Content-Type", jsonType)
	h.Set("Cache-Control", cacheControl)
	h.Set("Content-Length", strconv.Itoa(len(openAPI)))
	w.Write(openAPI)
	return nil
}
