package deploytest

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/op25b/observatory/internal/testenv"
)

var (
	root    string // the repository
	workDir string // built programs and tools, removed after the tests

	progOnce sync.Once
	programs *Programs
	progErr  error

	composeOnce sync.Once
	project     *Project
	images      *Images
	composeErr  error
)

func TestMain(m *testing.M) {
	var err error
	if root, err = Root(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if workDir, err = os.MkdirTemp("", "op25b-deploytest-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(workDir)
	os.Exit(code)
}

// progs returns our programs, built once per test binary.
func progs(t *testing.T) *Programs {
	t.Helper()
	testenv.Integration(t, "every program built with go build")
	progOnce.Do(func() {
		programs, progErr = BuildPrograms(root, filepath.Join(workDir, "bin"))
	})
	if progErr != nil {
		t.Fatal(progErr)
	}
	return programs
}

// compose returns docker-compose.yml as `docker compose config` reads it.
func compose(t *testing.T) (*Project, *Images) {
	t.Helper()
	composeOnce.Do(func() {
		project, composeErr = LoadCompose(root, workDir, filepath.Join(root, "docker-compose.yml"))
		if composeErr == nil {
			images, composeErr = NewImages(project)
		}
	})
	if composeErr != nil {
		t.Fatal(composeErr)
	}
	return project, images
}

// rel returns path relative to the repository, for messages.
func rel(path string) string {
	if r, err := filepath.Rel(root, path); err == nil {
		return r
	}
	return path
}
