package dataset

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

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

// maxQuoted is how many bytes of a parameter an error message repeats.
const maxQuoted = 64

// Quote quotes a parameter the caller sent for an error message, cut at
// 64 bytes on a character boundary and saying how long it was: a megabyte
// of it must not come back in the answer, nor go to the log.
func Quote(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	cut := maxQuoted
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s… (%d bytes)", strconv.Quote(s[:cut]), len(s))
}

// MaxDays bounds a window or a time range in days whatever a server
// allows, so that it is always a range of valid times: 100 years.
const MaxDays = 36600

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
		switch {
		case errors.Is(err, strconv.ErrRange) || err == nil && days > MaxDays:
			return nil, invalid("window %s: at most %d days", Quote(s), MaxDays)
		case err != nil || days < 1:
			return nil, invalid("window %s: want a number of days such as 30d", Quote(s))
		}
		return Rolling(days, now), nil
	}
	from, to, ok := strings.Cut(s, "/")
	if !ok {
		return nil, invalid("window %s: want 30d or 2026-03-01/2026-04-01", Quote(s))
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
		return nil, invalid("window %s: the end must come after the start", Quote(s))
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
		return time.Time{}, invalid("time %s: want 2026-03-01 or 2026-03-01T12:00:00Z", Quote(s))
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
	return 0, invalid("family %s: want ipv4 or ipv6", Quote(s))
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
	return 0, invalid("class %s: want one of %s", Quote(s), strings.Join(ClassNames(), ", "))
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
	return 0, invalid("verdict %s is not one we know", Quote(s))
}

// ParseASN reads "64500" or "AS64500".
func ParseASN(s string) (uint32, error) {
	s = strings.TrimSpace(s)
	n, err := strconv.ParseUint(strings.TrimPrefix(strings.ToUpper(s), "AS"), 10, 32)
	if err != nil || n == 0 {
		return 0, invalid("ASN %s: want a number such as 64500 or AS64500", Quote(s))
	}
	return uint32(n), nil
}
