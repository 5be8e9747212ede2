package chaos

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/op25b/observatory/collector/pgcluster"
	"github.com/op25b/observatory/internal/testenv"
)

// testWriter sends progress lines to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// TestMiniRun runs the real binaries through one phase: the collector
// killed twice during uploads. Nothing acknowledged may be lost or stored
// twice, and every result must be accounted for.
func TestMiniRun(t *testing.T) {
	if testing.Short() {
		t.Skip("a chaos run builds the binaries and runs for a minute or two")
	}
	testenv.NeedRoot(t)
	if _, err := pgcluster.FindBinDir(); err != nil {
		testenv.Unavailable(t, err.Error())
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "github.com/op25b/observatory/agent/cmd/op25b-agent",
		"github.com/op25b/observatory/refmta/cmd/op25b-refmta", "github.com/op25b/observatory/collector/cmd/op25b-collector",
		"github.com/op25b/observatory/deploy/chaos/cmd/op25b-chaos")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Config{BinDir: bin, Self: filepath.Join(bin, "op25b-chaos"), Phases: []string{PhaseCollectorKill},
		Agents: 1, Kills: 2, Settle: 5 * time.Second, Drain: 10 * time.Second, Progress: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(rep.WorkDir) })
	t.Logf("\n%s", rep.Markdown())
	if len(rep.Rows) != 2 || rep.Rows[0].Phase != PhaseCollectorKill || rep.Rows[1].Phase != PhaseDrain {
		t.Fatalf("rows %+v; want the collector kills and the drain", rep.Rows)
	}
	tot := rep.Total
	if tot.Produced == 0 || tot.Rounds == 0 {
		t.Errorf("totals %+v: no results produced", tot.Tally)
	}
	if tot.Duplicated != 0 || tot.LostAcked != 0 {
		t.Errorf("totals %+v: acknowledged results duplicated or lost", tot.Tally)
	}
	if tot.Produced != tot.Stored+tot.Lost+tot.Undelivered {
		t.Errorf("totals %+v: produced is not stored + lost + undelivered", tot.Tally)
	}
	if ingest := rep.Rows[0].Ingest; ingest == "" {
		t.Error("the collector kills say nothing about ingest")
	}
}
