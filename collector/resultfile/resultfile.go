// Package resultfile is the published form of one result as a row, and
// the Parquet file of such rows that the dataset export (collector/httpapi)
// and the daily archives (collector/archive) both write, so that the two
// carry the same columns, types and metadata. A row is built from a
// PublicResult only, which carries a /24 or /48 prefix and never a full
// address.
package resultfile

import (
	"io"
	"strconv"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/op25b/observatory/collector/dataset"
	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// Row is one published result, as every export format writes it.
type Row struct {
	ResultID   string    `json:"result_id" parquet:"result_id"`
	MeasuredAt time.Time `json:"measured_at" parquet:"measured_at,timestamp(microsecond)"`
	ASN        uint32    `json:"asn" parquet:"asn"`
	Country    string    `json:"country" parquet:"country,dict"`
	Prefix     string    `json:"prefix" parquet:"prefix,dict"`
	Family     string    `json:"family" parquet:"family,dict"`
	Port       uint32    `json:"port" parquet:"port"`
	Verdict    string    `json:"verdict" parquet:"verdict,dict"`
	Failure    string    `json:"failure" parquet:"failure,dict"`
	RefmtaID   string    `json:"refmta_id" parquet:"refmta_id,dict"`
	AgentID    string    `json:"agent_id" parquet:"agent_id,dict"`
	// RefMTACharged: charged to the reference MTA's side, left out of the
	// network's shares.
	RefMTACharged bool `json:"refmta_charged" parquet:"refmta_charged"`
	// OneOff: contributed once with `op25b-agent check --submit`, as
	// SubmissionID; counted at most once per prefix in the shares.
	OneOff       bool   `json:"one_off" parquet:"one_off"`
	SubmissionID string `json:"submission_id" parquet:"submission_id"`
}

// Columns are the column names, in the order of Row (the CSV header).
var Columns = []string{"result_id", "measured_at", "asn", "country", "prefix", "family", "port", "verdict", "failure", "refmta_id", "agent_id", "refmta_charged", "one_off", "submission_id"}

// RowOf is the published row of r.
func RowOf(r *pb.PublicResult) Row {
	return Row{
		ResultID: r.GetResultId(),
		// Every format carries microseconds, as Parquet does.
		MeasuredAt:    r.GetMeasuredAt().AsTime().UTC().Truncate(time.Microsecond),
		ASN:           r.GetAsn(),
		Country:       r.GetCountry(),
		Prefix:        r.GetPrefix(),
		Family:        dataset.FamilyName(r.GetFamily()),
		Port:          r.GetPort(),
		Verdict:       dataset.VerdictName(r.GetVerdict()),
		Failure:       r.GetFailure(),
		RefmtaID:      r.GetRefmtaId(),
		AgentID:       r.GetAgentId(),
		RefMTACharged: r.GetRefmtaCharged(),
		OneOff:        r.GetOneOff(),
		SubmissionID:  r.GetSubmissionId(),
	}
}

// Record is r as a CSV record, in the order of Columns.
func (r Row) Record() []string {
	return []string{
		r.ResultID, r.MeasuredAt.Format(time.RFC3339Nano), strconv.FormatUint(uint64(r.ASN), 10),
		r.Country, r.Prefix, r.Family, strconv.FormatUint(uint64(r.Port), 10),
		r.Verdict, r.Failure, r.RefmtaID, r.AgentID, strconv.FormatBool(r.RefMTACharged),
		strconv.FormatBool(r.OneOff), r.SubmissionID,
	}
}

// RowGroupRows is how many rows a Parquet row group holds at most.
const RowGroupRows = 64 << 10

// The key-value metadata of every Parquet file: the dataset's schema
// version and licence. Nothing else (no time of writing), so that the
// same rows give the same bytes.
const (
	MetaSchemaVersion = "op25b.schema_version"
	MetaLicence       = "op25b.licence"
)

// schemaName is the name of the Parquet schema's root. It was the row
// type's when the export had its own, and stays so that the export's
// files are unchanged.
const schemaName = "exportRow"

// Parquet writes results as a Parquet file, Zstandard-compressed, in row
// groups of RowGroupRows rows, buffered until full. The same results give
// the same bytes.
type Parquet struct {
	w    *parquet.GenericWriter[Row]
	rows []Row
}

// NewParquet returns a Parquet writer to w.
func NewParquet(w io.Writer) *Parquet {
	pw := parquet.NewGenericWriter[Row](w, parquet.NewSchema(schemaName, parquet.SchemaOf(Row{})),
		parquet.Compression(&parquet.Zstd), parquet.MaxRowsPerRowGroup(RowGroupRows))
	pw.SetKeyValueMetadata(MetaSchemaVersion, dataset.SchemaVersion)
	pw.SetKeyValueMetadata(MetaLicence, dataset.Licence)
	return &Parquet{w: pw}
}

// Write adds batch to the file.
func (p *Parquet) Write(batch []*pb.PublicResult) error {
	p.rows = p.rows[:0]
	for _, r := range batch {
		p.rows = append(p.rows, RowOf(r))
	}
	_, err := p.w.Write(p.rows)
	return err
}

// Close writes the file's footer; the file is complete only then.
func (p *Parquet) Close() error { return p.w.Close() }
