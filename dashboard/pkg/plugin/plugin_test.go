package plugin

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"

	"github.com/op25b/observatory/collector/api"
	"github.com/op25b/observatory/collector/collectortest"
	"github.com/op25b/observatory/collector/dataset/datasettest"
	"github.com/op25b/observatory/collector/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// seeded starts a real collector over PostgreSQL seeded with
// datasettest's world, on that world's clock and refreshed, and returns
// the settings of a data source that uses it.
func seeded(t *testing.T) backend.DataSourceInstanceSettings {
	t.Helper()
	c := collectortest.Start(t, api.Options{})
	c.Now = func() time.Time { return datasettest.Now }
	datasettest.NewWorld().Seed(t, c.Store)
	if _, err := c.Dataset.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(c.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	return settings(c.Addr, map[string]string{"tlsCACert": string(ca)})
}

func settings(addr string, secure map[string]string) backend.DataSourceInstanceSettings {
	return backend.DataSourceInstanceSettings{UID: "op25b", Name: "OP25B", Updated: datasettest.Now,
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
