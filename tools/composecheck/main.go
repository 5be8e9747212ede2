// Command composecheck validates a Compose file the way `docker compose
// config` does, without Docker: it loads the file with
// github.com/compose-spec/compose-go/v2 (the library behind `docker compose
// config`), interpolates variables with their defaults, validates the result
// against the Compose specification's JSON schema, checks its consistency
// (services, networks and volumes referred to exist; depends_on has no
// cycle) and prints the normalized configuration.
//
//	composecheck [-q] [-format yaml|json] [-os-env] [-profile NAME]... [FILE...]
//
// Without FILE it reads docker-compose.yml in the current directory. Unless
// -os-env is given, variables are interpolated from an empty environment, so
// the check sees the defaults the file declares (${VAR:-default}) whatever
// the caller's environment holds. Exit status: 0 valid, 1 invalid, 2 usage.
//
// It has its own module so that the main module never links compose-go.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

type profiles []string

func (p *profiles) String() string     { return strings.Join(*p, ",") }
func (p *profiles) Set(v string) error { *p = append(*p, v); return nil }

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("composecheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quiet := fs.Bool("q", false, "only validate: print nothing when the file is valid")
	format := fs.String("format", "yaml", "output: yaml or json")
	osEnv := fs.Bool("os-env", false, "interpolate from this process's environment (and .env) instead of the defaults alone")
	var prof profiles
	fs.Var(&prof, "profile", "also enable the services of this profile (repeatable); \"*\" enables all")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *format != "yaml" && *format != "json" {
		fmt.Fprintf(stderr, "composecheck: -format %q: want yaml or json\n", *format)
		return 2
	}
	files := fs.Args()
	if len(files) == 0 {
		files = []string{"docker-compose.yml"}
	}
	p, err := load(ctx, files, *osEnv, prof)
	if err != nil {
		fmt.Fprintf(stderr, "composecheck: %s: invalid: %v\n", strings.Join(files, ", "), err)
		return 1
	}
	if *quiet {
		return 0
	}
	var out []byte
	if *format == "json" {
		out, err = p.MarshalJSON()
	} else {
		out, err = p.MarshalYAML()
	}
	if err != nil {
		fmt.Fprintf(stderr, "composecheck: %v\n", err)
		return 1
	}
	stdout.Write(out)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		fmt.Fprintln(stdout)
	}
	return 0
}

// load reads, interpolates, validates and normalizes the files as `docker
// compose config` does, with paths resolved against the first file's
// directory.
func load(ctx context.Context, files []string, osEnv bool, prof []string) (*types.Project, error) {
	opts := []cli.ProjectOptionsFn{
		cli.WithInterpolation(true),
		cli.WithNormalization(true),
		cli.WithConsistency(true),
		cli.WithResolvedPaths(true),
		cli.WithProfiles(prof),
	}
	if osEnv {
		opts = append(opts, cli.WithOsEnv, cli.WithDotEnv)
	} else {
		opts = append(opts, cli.WithEnv(nil))
	}
	o, err := cli.NewProjectOptions(files, opts...)
	if err != nil {
		return nil, err
	}
	return o.LoadProject(ctx)
}
