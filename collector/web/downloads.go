package web

import (
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
)

// download is one release file of the agent (deploy/release.sh).
type download struct {
	Name     string // op25b-agent_VERSION_OS_ARCH[.exe]
	Platform string // OS_ARCH
	Size     string
}

// pkg is one package of the agent for a Linux distribution or router.
type pkg struct {
	Name   string
	Format string // deb, rpm, apk or ipk
	Arch   string // in the format's own words (amd64, x86_64, mipsel_24kc)
	Size   string
}

// downloads are what the check page offers from the release directory.
type downloads struct {
	Files []download
	// Packages are the deb, rpm, apk and ipk packages.
	Packages []pkg
	// Yours are the files for the visitor's system, best first.
	Yours []download
	// Signed: SHA256SUMS, its minisign signature and the public key are
	// there.
	Signed bool
}

var releaseFile = regexp.MustCompile(`^op25b-agent_[A-Za-z0-9.+-]+_((?:linux|windows|darwin|freebsd)_[a-z0-9]+)(?:\.exe)?$`)

// packageFile matches the packages deploy/release.sh makes with nfpm, and
// captures the architecture and the format: op25b-agent_VERSION_ARCH.deb
// (also .apk, .ipk) and op25b-agent-VERSION-1.ARCH.rpm, VERSION with a ~
// before anything that is not a tagged release.
var packageFile = regexp.MustCompile(`^op25b-agent(?:_[0-9][A-Za-z0-9.~+]*_([a-z0-9_-]+)\.(deb|apk|ipk)|-[0-9][A-Za-z0-9.~+]*-1\.([a-z0-9_]+)\.(rpm))$`)

// releaseNames are the release's files besides the agents and packages.
var releaseNames = []string{"SHA256SUMS", "SHA256SUMS.minisig", "op25b-release.pub"}

// Served reports whether the collector serves the release file name under
// /download/: deploy/release.sh's names, and nothing else.
func Served(name string) bool {
	return releaseFile.MatchString(name) || packageFile.MatchString(name) || slices.Contains(releaseNames, name)
}

// readDownloads lists the agent's release files in dir, and picks those
// for userAgent's system.
func readDownloads(dir, userAgent string) (*downloads, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	d := &downloads{}
	have := map[string]bool{}
	for _, e := range entries {
		have[e.Name()] = true
		bin, pk := releaseFile.FindStringSubmatch(e.Name()), packageFile.FindStringSubmatch(e.Name())
		if bin == nil && pk == nil || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, err
		}
		size := fmt.Sprintf("%.1f MiB", float64(info.Size())/(1<<20))
		if bin != nil {
			d.Files = append(d.Files, download{Name: e.Name(), Platform: bin[1], Size: size})
			continue
		}
		p := pkg{Name: e.Name(), Arch: pk[1], Format: pk[2], Size: size}
		if p.Format == "" {
			p.Arch, p.Format = pk[3], pk[4]
		}
		d.Packages = append(d.Packages, p)
	}
	d.Signed = have["SHA256SUMS"] && have["SHA256SUMS.minisig"] && have["op25b-release.pub"]
	for _, p := range platformsFor(userAgent) {
		for _, f := range d.Files {
			if f.Platform == p {
				d.Yours = append(d.Yours, f)
			}
		}
	}
	return d, nil
}

// platformsFor returns the release platforms that suit a browser's
// User-Agent, best first: a browser says its system, and an ARM CPU only
// sometimes (Macs never tell Apple silicon from Intel; Apple silicon is
// the likelier today).
func platformsFor(ua string) []string {
	arm := strings.Contains(ua, "aarch64") || strings.Contains(ua, "ARM64") || strings.Contains(ua, "arm64")
	pick := func(first, second string) []string {
		if arm {
			return []string{second, first}
		}
		return []string{first, second}
	}
	switch {
	case strings.Contains(ua, "Android") || strings.Contains(ua, "iPhone") || strings.Contains(ua, "iPad"):
		return nil // no agent for phones
	case strings.Contains(ua, "Windows"):
		return pick("windows_amd64", "windows_arm64")
	case strings.Contains(ua, "Macintosh") || strings.Contains(ua, "Mac OS X"):
		return []string{"darwin_arm64", "darwin_amd64"}
	case strings.Contains(ua, "FreeBSD"):
		return []string{"freebsd_amd64"}
	case strings.Contains(ua, "Linux") || strings.Contains(ua, "X11"):
		return pick("linux_amd64", "linux_arm64")
	}
	return nil
}

// serveDownloads serves the release directory under /download/, files
// only: a name outside the release's is not found.
func serveDownloads(dir string) http.Handler {
	files := http.StripPrefix("/download/", http.FileServer(http.Dir(dir)))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/download/")
		if !Served(name) {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Disposition", "attachment")
		// 13 MiB take longer than the server's 30 s write timeout on a slow
		// line: a download gets ten minutes.
		http.NewResponseController(w).SetWriteDeadline(time.Now().Add(10 * time.Minute))
		files.ServeHTTP(w, r)
	})
}
