package archive

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// ManifestName is the manifest's file name in the archive directory.
const ManifestName = "manifest.json"

// ManifestVersion is the version of the manifest's format: fields are
// only ever added to it, a change that would break a reader gets a new
// version.
const ManifestVersion = 1

// Manifest lists the archive's files, one per UTC day, in day order. It
// has no time of writing, so that two directories holding the same days
// have the same manifest. docs/researcher.md documents it.
type Manifest struct {
	ManifestVersion int     `json:"manifest_version"`
	Days            []Entry `json:"days"`
}

// Entry is one day's file.
type Entry struct {
	Day           string `json:"day"`  // YYYY-MM-DD, UTC
	Path          string `json:"path"` // relative to the manifest, with slashes
	Rows          int64  `json:"rows"`
	Bytes         int64  `json:"bytes"`
	SHA256        string `json:"sha256"` // of the file, lowercase hex
	SchemaVersion string `json:"schema_version"`
	Licence       string `json:"licence"` // SPDX identifier
}

// FileName is the name of day's file.
func FileName(day time.Time) string {
	return "op25b-results-" + day.UTC().Format(time.DateOnly) + ".parquet"
}

// RelPath is the path of day's file relative to the archive directory
// (one directory per year), with slashes, as the manifest gives it.
func RelPath(day time.Time) string {
	return path.Join(day.UTC().Format("2006"), FileName(day))
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ReadManifest reads the manifest of dir; a directory without one has an
// empty manifest. A manifest that cannot be read or is not one is an
// error that names the file and what is wrong, and is left as it is.
func ReadManifest(dir string) (*Manifest, error) {
	file := filepath.Join(dir, ManifestName)
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return &Manifest{ManifestVersion: ManifestVersion}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("archive: %s is not a manifest (%w); move it aside to write a new one from the files' days", file, err)
	}
	if m.ManifestVersion != ManifestVersion {
		return nil, fmt.Errorf("archive: %s has manifest_version %d; this collector reads %d", file, m.ManifestVersion, ManifestVersion)
	}
	for i, e := range m.Days {
		day, err := time.Parse(time.DateOnly, e.Day)
		switch {
		case err != nil:
			return nil, fmt.Errorf("archive: %s: days[%d]: day %q is not YYYY-MM-DD", file, i, e.Day)
		case e.Path != RelPath(day):
			return nil, fmt.Errorf("archive: %s: days[%d] (%s): path %q; want %q", file, i, e.Day, e.Path, RelPath(day))
		case !sha256Hex.MatchString(e.SHA256):
			return nil, fmt.Errorf("archive: %s: days[%d] (%s): sha256 %q is not 64 lowercase hex digits", file, i, e.Day, e.SHA256)
		case e.Rows <= 0 || e.Bytes <= 0:
			return nil, fmt.Errorf("archive: %s: days[%d] (%s): rows %d and bytes %d must be positive", file, i, e.Day, e.Rows, e.Bytes)
		case i > 0 && e.Day <= m.Days[i-1].Day:
			return nil, fmt.Errorf("archive: %s: days[%d] (%s) does not come after %s: days must be in order, each once", file, i, e.Day, m.Days[i-1].Day)
		}
	}
	return &m, nil
}

// Entry returns the entry of day, if the manifest has one.
func (m *Manifest) Entry(day time.Time) (Entry, bool) {
	i, ok := m.find(day)
	if !ok {
		return Entry{}, false
	}
	return m.Days[i], true
}

func (m *Manifest) find(day time.Time) (int, bool) {
	return slices.BinarySearchFunc(m.Days, day.UTC().Format(time.DateOnly), func(e Entry, d string) int { return strings.Compare(e.Day, d) })
}

// put adds e, or replaces the entry of its day.
func (m *Manifest) put(e Entry) {
	i, ok := slices.BinarySearchFunc(m.Days, e.Day, func(e Entry, d string) int { return strings.Compare(e.Day, d) })
	if ok {
		m.Days[i] = e
		return
	}
	m.Days = slices.Insert(m.Days, i, e)
}

// write replaces the manifest of dir atomically.
func (m *Manifest) write(dir string) error {
	if m.Days == nil {
		m.Days = []Entry{}
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(dir, ManifestName, append(b, '\n'))
}

// writeAtomic writes data to dir/name through a temporary file renamed
// over it, so that a reader sees the old file or the new, never a part.
func writeAtomic(dir, name string, data []byte) error {
	f, err := os.CreateTemp(dir, tempPrefix+"*"+tempSuffix)
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		return discard(f, err)
	}
	return commit(f, filepath.Join(dir, name))
}
