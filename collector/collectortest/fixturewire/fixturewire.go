// Package fixturewire is the protocol of op25b-fixture
// (collector/collectortest/cmd/op25b-fixture), which serves real
// collectors to the tests of the Grafana plugin: one JSON object a line
// each way. The fixture's first line is a Response with the World; then
// it answers each Request on its stdin with one Response:
//
//	{"start": {"seeded": true, "stream": true}}
//	  → {"collector": {"id": 1, "addr": "127.0.0.1:PORT", "caCert": "PEM"}}
//	{"insert": {"id": 1, "results": [{"asn": 64500, "port": 25, "verdict": "OPEN", "prefix": "192.0.2.0/24", ...}]}}
//	  → {"inserted": 1}
//	{"change": {"id": 1, "asn": 64500, "family": 4, "day": "2026-03-08", "from": "OPEN", "to": "OP25B"}}
//	  → {}
//	{"held": {"id": 1}}
//	  → {"held": 2}
//
// A request that fails is answered {"error": "..."}; a start on a machine
// without PostgreSQL {"unavailable": "the reason"}. The plugin speaks it
// through its copy of this package (tools/plugincopy), so the two sides
// cannot drift apart.
package fixturewire

import "time"

// World is what tests check frames against of the seeded world
// (collector/dataset/datasettest).
type World struct {
	// Now is the world's clock: the seeded days are the 7 UTC days ending
	// with it.
	Now time.Time `json:"now"`
	// ChangeDay is the day AS64506 turned from OPEN to OP25B over IPv4.
	ChangeDay time.Time `json:"changeDay"`
	// SchemaVersion is the dataset schema the collectors report.
	SchemaVersion string `json:"schemaVersion"`
	ASNs          []ASN  `json:"asns"`
	// Addresses are the full source addresses of the world's results,
	// which no public output may hold.
	Addresses []string `json:"addresses"`
}

// ASN is a seeded network and its class per family ("ipv4", "ipv6").
type ASN struct {
	ASN   uint32            `json:"asn"`
	Class map[string]string `json:"class"`
}

// Request is one request: exactly one field is set.
type Request struct {
	// Start starts a collector over a fresh database.
	Start *Options `json:"start,omitempty"`
	// Insert stores results in a collector's database, as ingest does.
	Insert *Insert `json:"insert,omitempty"`
	// Change logs a policy change in a collector's database, as a refresh
	// does, and notifies the collectors that follow it.
	Change *Change `json:"change,omitempty"`
	// Held asks how many stream subscribers a collector holds.
	Held *Ref `json:"held,omitempty"`
}

// Options say what a collector serves.
type Options struct {
	// Seeded serves the seeded world on its clock (World.Now), refreshed;
	// else an empty database on the real clock.
	Seeded bool `json:"seeded"`
	// Stream serves DatasetService.Stream.
	Stream bool `json:"stream"`
}

// Ref names a collector.
type Ref struct {
	ID int `json:"id"`
}

// Insert is results to store in collector ID's database.
type Insert struct {
	ID      int      `json:"id"`
	Results []Result `json:"results"`
}

// Result is a result measured now by an agent of Prefix (from its second
// address).
type Result struct {
	ASN     uint32 `json:"asn"`
	Port    uint16 `json:"port"`
	Verdict string `json:"verdict"` // such as "BLOCKED_TIMEOUT"
	Prefix  string `json:"prefix"`
	Failure string `json:"failure,omitempty"`
	RefMTA  string `json:"refmta"`
}

// Change is a policy change of an ASN, for collector ID.
type Change struct {
	ID     int    `json:"id"`
	ASN    uint32 `json:"asn"`
	Family uint8  `json:"family"` // 4 or 6
	Day    string `json:"day"`    // YYYY-MM-DD
	From   string `json:"from"`   // a class, such as "OPEN"
	To     string `json:"to"`
}

// Collector is a running collector.
type Collector struct {
	ID int `json:"id"`
	// Addr is its gRPC host:port on the loopback.
	Addr string `json:"addr"`
	// CACert is the PEM of the CA of its TLS certificate.
	CACert string `json:"caCert"`
}

// Response is the fixture's greeting or its answer to a request.
type Response struct {
	World       *World     `json:"world,omitempty"`
	Collector   *Collector `json:"collector,omitempty"`
	Inserted    *int64     `json:"inserted,omitempty"`
	Held        *int       `json:"held,omitempty"`
	Unavailable string     `json:"unavailable,omitempty"`
	Error       string     `json:"error,omitempty"`
}
