// Command gpx_op25b is the backend of the OP25B Observatory Grafana data
// source; Grafana starts it.
package main

import (
	"os"

	"github.com/grafana/grafana-plugin-sdk-go/backend/datasource"
	"github.com/grafana/grafana-plugin-sdk-go/backend/log"

	"github.com/op25b/observatory/dashboard/pkg/plugin"
)

func main() {
	if err := datasource.Manage("op25b-observatory-datasource", plugin.NewDatasource, datasource.ManageOpts{}); err != nil {
		log.DefaultLogger.Error(err.Error())
		os.Exit(1)
	}
}
