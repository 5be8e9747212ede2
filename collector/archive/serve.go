package archive

import (
	"io/fs"
	"net/http"
	"os"
	"strings"
)

// Handler serves dir read-only, with directory listings: the manifest,
// the year directories and the day files. Names starting with a dot (the
// temporary files of writes in progress among them) are neither listed
// nor served. Mount it with http.StripPrefix.
func Handler(dir string) http.Handler {
	return http.FileServer(http.FS(publicFS{os.DirFS(dir)}))
}

// publicFS hides the names that start with a dot.
type publicFS struct{ fsys fs.FS }

func (p publicFS) Open(name string) (fs.File, error) {
	if hidden(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	f, err := p.fsys.Open(name)
	if err != nil {
		return nil, err
	}
	// A regular file is served as it is, which keeps its Seek for
	// range requests.
	if d, ok := f.(fs.ReadDirFile); ok {
		if fi, err := f.Stat(); err == nil && fi.IsDir() {
			return publicDir{d}, nil
		}
	}
	return f, nil
}

func hidden(name string) bool {
	for elem := range strings.SplitSeq(name, "/") {
		if strings.HasPrefix(elem, ".") && elem != "." {
			return true
		}
	}
	return false
}

// publicDir lists a directory without the names that start with a dot.
type publicDir struct{ fs.ReadDirFile }

func (d publicDir) ReadDir(n int) ([]fs.DirEntry, error) {
	for {
		entries, err := d.ReadDirFile.ReadDir(n)
		shown := entries[:0]
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), ".") {
				shown = append(shown, e)
			}
		}
		// With n > 0, an empty batch would read as the end of the
		// directory: read on while every entry read was hidden.
		if len(shown) > 0 || len(entries) == 0 || n <= 0 || err != nil {
			return shown, err
		}
	}
}
