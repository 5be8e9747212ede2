// Package e2e holds the pipeline's end-to-end tests: real agent daemons,
// real collectors (in-process, or the built binary when it is to be
// killed), real PostgreSQL, and the failures the pipeline must survive
// without losing or duplicating a result.
package e2e
