package dataset

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/op25b/observatory/proto/op25b/v1"
)

// ErrInvalid marks a request the caller must change (HTTP 400,
// InvalidArgument); ErrNotFound one that names nothing we have (HTTP 404,
// NotFound). Errors from the query layer wrap one of them, or are the
// server's fault.
var (
	ErrInvalid  = errors.New("invalid request")
	ErrNotFound = errors.New("not found")
)

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}

// Day is the unit of the dataset's time: UTC calendar days.
const Day = 24 * time.Hour

// Today returns the UTC day containing t, at 00:00.
func Today(t time.Time) time.Time { return t.UTC().Truncate(Day) }

// Rolling returns the window of the last days days ending with the UTC day
// that contains now: [today-days+1, today+1).
func Rolling(days int, now time.Time) *pb.TimeRange {
	end := Today(now).Add(Day)
	return &pb.TimeRange{Start: timestamppb.New(end.Add(-time.Duration(days) * Day)), End: timestamppb.New(end)}
}

// ParseWindow reads a window as the HTTP API and the CLI write it: "" (the
// server's default), "30d" (the last 30 UTC days, today included), or
// "2026-03-01/2026-04-01" (UTC days, the end excluded).
func ParseWindow(s string, now time.Time) (*pb.TimeRange, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 1 {
			return nil, invalid("window %q: want a number of days such as 30d", s)
		}
		return Rolling(days, now), nil
	}
	from, to, ok := strings.Cut(s, "/")
	if !ok {
		return nil, invalid("window %q: want 30d or 2026-03-01/2026-04-01", s)
	}
	start, err := ParseTime(from)
	if err != nil {
		return nil, err
	}
	end, err := ParseTime(to)
	if err != nil {
		return nil, err
	}
	if !end.After(start) {
		return nil, invalid("window %q: the end must come after the start", s)
	}
	return &pb.TimeRange{Start: timestamppb.New(start), End: timestamppb.New(end)}, nil
}

// ParseTime reads a UTC day (2026-03-01) or an RFC 3339 time.
func ParseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, invalid("time %q: want 2026-03-01 or 2026-03-01T12:00:00Z", s)
	}
	return t.UTC(), nil
}

// FormatWindow writes w as ParseWindow reads it.
func FormatWindow(w *pb.TimeRange) string {
	if w == nil {
		return ""
	}
	return w.GetStart().AsTime().UTC().Format(time.DateOnly) + "/" + w.GetEnd().AsTime().UTC().Format(time.DateOnly)
}

// ParseFamily reads "ipv4", "ipv6", "4" or "6" (any case); "" is either.
func ParseFamily(s string) (pb.AddressFamily, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "":
		return pb.AddressFamily_ADDRESS_FAMILY_UNSPECIFIED, nil
	case "4", "ipv4", "v4", "address_family_ipv4":
		return pb.AddressFamily_ADDRESS_FAMILY_IPV4, nil
	case "6", "ipv6", "v6", "address_family_ipv6":
		return pb.AddressFamily_ADDRESS_FAMILY_IPV6, nil
	}
	return 0, invalid("family %q: want ipv4 or ipv6", s)
}

// FamilyName is the short name of f: "ipv4", "ipv6" or "".
func FamilyName(f pb.AddressFamily) string {
	switch f {
	case pb.AddressFamily_ADDRESS_FAMILY_IPV4:
		return "ipv4"
	case pb.AddressFamily_ADDRESS_FAMILY_IPV6:
		return "ipv6"
	}
	return ""
}

// ParseClass reads a policy class by its short name ("OP25B",
// "all_smtp_blocked") or its enum name; "" is any class.
func ParseClass(s string) (pb.PolicyClass, error) {
	s = strings.ToUpper(strings.TrimSpace(s))
	if s == "" {
		return pb.PolicyClass_POLICY_CLASS_UNSPECIFIED, nil
	}
	if v, ok := pb.PolicyClass_value["POLICY_CLASS_"+strings.TrimPrefix(s, "POLICY_CLASS_")]; ok && v != 0 {
		return pb.PolicyClass(v), nil
	}
	return 0, invalid("class %q: want one of %s", s, strings.Join(ClassNames(), ", "))
}

// ClassName is the short name of c, such as "OP25B" or "INSUFFICIENT_DATA".
func ClassName(c pb.PolicyClass) string {
	return strings.TrimPrefix(c.String(), "POLICY_CLASS_")
}

// ClassNames lists the short names of the policy classes in enum order.
func ClassNames() []string {
	var out []string
	for v := int32(1); ; v++ {
		if _, ok := pb.PolicyClass_name[v]; !ok {
			return out
		}
		out = append(out, ClassName(pb.PolicyClass(v)))
	}
}

// VerdictName is the DESIGN.md name of v, such as "BLOCKED_TIMEOUT".
func VerdictName(v pb.Verdict) string {
	return strings.TrimPrefix(v.String(), "VERDICT_")
}

// ParseVerdict reads a verdict by its DESIGN.md name or its enum name.
func ParseVerdict(s string) (pb.Verdict, error) {
	s = strings.ToUpper(strings.TrimSpace(s))
	if v, ok := pb.Verdict_value["VERDICT_"+strings.TrimPrefix(s, "VERDICT_")]; ok && v != 0 {
		return pb.Verdict(v), nil
	}
	return 0, invalid("verdict %q is not one we know", s)
}

// ParseASN reads "64500" or "AS64500".
func ParseASN(s string) (uint32, error) {
	s = strings.TrimSpace(s)
	n, err := strconv.ParseUint(strings.TrimPrefix(strings.ToUpper(s), "AS"), 10, 32)
	if err != nil || n == 0 {
		return 0, invalid("ASN %q: want a number such as 64500 or AS64500", s)
	}
	return uint32(n), nil
}
