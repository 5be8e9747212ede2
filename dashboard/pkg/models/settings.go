// Package models holds the settings of the OP25B Observatory data source:
// where the collector's gRPC DatasetService listens and how to trust it.
package models

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
)

// Settings are a data source instance's jsonData and decrypted
// secureJsonData.
type Settings struct {
	// Address is the collector's gRPC host:port, such as
	// collector.example:8443.
	Address string `json:"address"`
	// TLSSkipVerify accepts any certificate (tests and labs only).
	TLSSkipVerify bool `json:"tlsSkipVerify"`
	// ServerName is the name to verify in the collector's certificate when
	// it differs from the address's host.
	ServerName string `json:"serverName"`

	// APIToken, when set, is sent as "authorization: Bearer <token>".
	APIToken string `json:"-"`
	// TLSCACert is the PEM CA that signs the collector's certificate (its
	// local CA, --data-dir/tls/ca.pem); empty means the system roots.
	TLSCACert string `json:"-"`
}

// Load reads and checks the settings; its errors say what to fix.
func Load(s backend.DataSourceInstanceSettings) (Settings, error) {
	var st Settings
	if len(s.JSONData) > 0 {
		if err := json.Unmarshal(s.JSONData, &st); err != nil {
			return st, fmt.Errorf("settings: jsonData: %w", err)
		}
	}
	st.Address = strings.TrimSpace(st.Address)
	st.APIToken = s.DecryptedSecureJSONData["apiToken"]
	st.TLSCACert = s.DecryptedSecureJSONData["tlsCACert"]
	if st.Address == "" {
		return st, errors.New("no collector address: set it to the collector's gRPC host:port, such as collector.example:8443")
	}
	host, port, err := net.SplitHostPort(st.Address)
	if n, perr := strconv.ParseUint(port, 10, 16); err != nil || host == "" || perr != nil || n == 0 {
		return st, fmt.Errorf("collector address %q: want the collector's gRPC host:port, such as collector.example:8443 (no https://, no path)", st.Address)
	}
	if st.TLSCACert != "" && !x509.NewCertPool().AppendCertsFromPEM([]byte(st.TLSCACert)) {
		return st, errors.New("the TLS CA certificate holds no PEM certificate: paste the collector's ca.pem, or leave it empty to use the system roots")
	}
	return st, nil
}
