import { DataSourceJsonData } from '@grafana/data';
import { DataQuery } from '@grafana/schema';

/** What a query asks the collector's DatasetService for. */
export type QueryType = 'asns' | 'timeline' | 'countries' | 'peers' | 'prefixes' | 'changes' | 'results' | 'live';

export const QUERY_TYPES: QueryType[] = [
  'asns',
  'timeline',
  'countries',
  'peers',
  'prefixes',
  'changes',
  'results',
  'live',
];

/** Address family; '' is both. */
export type Family = 'ipv4' | 'ipv6' | '';

/** Policy class of an ASN and family; '' is any. */
export type PolicyClass = 'OP25B' | 'INTERCEPT' | 'OPEN' | 'ALL_SMTP_BLOCKED' | 'MIXED' | 'INSUFFICIENT_DATA' | '';

export const POLICY_CLASSES: Exclude<PolicyClass, ''>[] = [
  'OP25B',
  'INTERCEPT',
  'OPEN',
  'ALL_SMTP_BLOCKED',
  'MIXED',
  'INSUFFICIENT_DATA',
];

/** SMTP port: relay (25), submission (587), submissions with implicit TLS (465). */
export type Port = 25 | 587 | 465;

export const PORTS: Port[] = [25, 587, 465];

/**
 * A dashboard variable reference such as "$asn" or "${asn}". Fields that can
 * hold one keep it until applyTemplateVariables replaces it; the backend only
 * ever sees the resolved value.
 */
export type Variable = `$${string}`;

/** The filters each query type reads (pkg/plugin/query.go); it ignores the others. */
export const QUERY_FIELDS: Record<QueryType, Array<keyof Omit<OP25BQuery, keyof DataQuery>>> = {
  asns: ['country', 'family', 'policyClass'],
  timeline: ['asn', 'family', 'port'],
  countries: ['country', 'family'],
  peers: ['asn', 'family'],
  prefixes: ['asn', 'family', 'port'],
  changes: ['asn', 'country', 'family'],
  results: ['asn', 'country', 'family', 'limit'],
  live: ['asn', 'port'],
};

/** Default and largest number of rows of a results query. */
export const DEFAULT_RESULTS_LIMIT = 1000;
export const MAX_RESULTS_LIMIT = 10000;

/** The query model shared with the Go backend (pkg/models). */
export interface OP25BQuery extends DataQuery {
  queryType: QueryType;
  asn?: number | Variable;
  /** ISO 3166-1 alpha-2, or a variable. */
  country?: string;
  family?: Family | Variable;
  policyClass?: PolicyClass | Variable;
  /** The port a timeline follows, whose verdict a prefixes query gives, or a live query streams (none: all). */
  port?: Port;
  /** Rows of a results query: default 1000, at most 10000. */
  limit?: number;
}

export const DEFAULT_QUERY: Partial<OP25BQuery> = {
  queryType: 'asns',
  family: '',
  policyClass: '',
};

/** Data source settings stored in jsonData (visible to the browser). */
export interface OP25BOptions extends DataSourceJsonData {
  /** host:port of the collector's gRPC listener (DatasetService). */
  address?: string;
  tlsSkipVerify?: boolean;
  /** TLS server name to verify when it differs from the address's host. */
  serverName?: string;
}

/** Settings only the backend reads: never sent back to the browser. */
export interface OP25BSecureOptions {
  apiToken?: string;
  /** PEM CA certificate that signed the collector's certificate. */
  tlsCACert?: string;
}
