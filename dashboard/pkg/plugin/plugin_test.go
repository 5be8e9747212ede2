package plugin

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"

	"github.com/op25b/observatory/dashboard/pkg/internal/collectorfixture"
)

func TestMain(m *testing.M) { collectorfixture.Main(m) }

// seededNow is the seeded world's clock (datasettest.Now), which the
// golden files were made on.
var seededNow = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

// seeded returns the settings of a data source that uses a real collector
// over PostgreSQL seeded with datasettest's world, on that world's clock
// and refreshed (collectorfixture), and the world's facts.
func seeded(t *testing.T) (backend.DataSourceInstanceSettings, collectorfixture.World) {
	t.Helper()
	c, w := collectorfixture.Seeded(t)
	if !w.Now.Equal(seededNow) {
		t.Fatalf("the seeded world's clock is %v; the golden files are of %v", w.Now, seededNow)
	}
	return settings(c.Addr, map[string]string{"tlsCACert": c.CACert}), w
}

func settings(addr string, secure map[string]string) backend.DataSourceInstanceSettings {
	return backend.DataSourceInstanceSettings{UID: "op25b", Name: "OP25B", Updated: seededNow,
		JSONData: fmt.Appendf(nil, `{"address": %q}`, addr), DecryptedSecureJSONData: secure}
}

// open creates a data source instance the way the SDK does, disposed when
// the test ends.
func open(t *testing.T, s backend.DataSourceInstanceSettings) *Datasource {
	t.Helper()
	inst, err := NewDatasource(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	d := inst.(*Datasource)
	t.Cleanup(d.Dispose)
	return d
}
