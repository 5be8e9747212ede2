import React, { ChangeEvent, useEffect, useState } from 'react';
import { QueryEditorProps, SelectableValue } from '@grafana/data';
import { getTemplateSrv } from '@grafana/runtime';
import { InlineField, InlineFieldRow, Input, RadioButtonGroup, Select } from '@grafana/ui';

import type { DataSource } from '../datasource';
import {
  DEFAULT_RESULTS_LIMIT,
  Family,
  MAX_RESULTS_LIMIT,
  OP25BOptions,
  OP25BQuery,
  POLICY_CLASSES,
  PolicyClass,
  Port,
  PORTS,
  QUERY_FIELDS,
  QueryType,
  Variable,
} from '../types';

type Props = QueryEditorProps<DataSource, OP25BQuery, OP25BOptions>;

export const QUERY_TYPE_OPTIONS: Array<SelectableValue<QueryType>> = [
  { value: 'asns', label: 'ASN adoption', description: 'Policy class and per-port verdict shares of each ASN' },
  { value: 'timeline', label: 'ASN timeline', description: 'Class and shares of one ASN, day by day' },
  { value: 'countries', label: 'Countries', description: 'ASNs per class and OP25B share, by ISO country code' },
  { value: 'peers', label: 'Peer comparison', description: "One ASN's rank among its country's ASNs, and its gaps" },
  { value: 'prefixes', label: 'ASN prefixes', description: 'Verdict of each /24 or /48 prefix of one ASN on a port' },
  { value: 'changes', label: 'Policy changes', description: 'Days an ASN changed class (usable as annotations)' },
  { value: 'results', label: 'Raw results', description: `Public raw results, at most ${MAX_RESULTS_LIMIT} rows` },
  { value: 'live', label: 'Live results', description: "One ASN's results as the collector stores them (Grafana Live)" },
];

/** The query types that answer for one ASN. */
const ASN_REQUIRED: QueryType[] = ['timeline', 'peers', 'prefixes', 'live'];

const FAMILY_OPTIONS: Array<SelectableValue<string>> = [
  { value: '', label: 'Both' },
  { value: 'ipv4', label: 'IPv4' },
  { value: 'ipv6', label: 'IPv6' },
];

const CLASS_OPTIONS: Array<SelectableValue<string>> = [
  { value: '', label: 'Any' },
  ...POLICY_CLASSES.map((c) => ({ value: c, label: c })),
];

// 0 stands for "every port": the query then has no port.
const PORT_OPTIONS: Array<SelectableValue<number>> = [
  { value: 0, label: 'All' },
  ...PORTS.map((p) => ({ value: p, label: String(p) })),
];

const LABEL_WIDTH = 12;

/**
 * QueryEditor picks a query type and the filters that type reads. Text
 * fields accept dashboard variables ($asn, $country); the selects offer the
 * dashboard's variables too.
 */
export function QueryEditor({ query, onChange, onRunQuery }: Props) {
  const queryType: QueryType = query.queryType ?? 'asns';
  const fields = QUERY_FIELDS[queryType] ?? QUERY_FIELDS.asns;
  const variables = variableOptions();

  const update = (patch: Partial<OP25BQuery>) => {
    onChange({ ...query, ...patch });
    onRunQuery();
  };

  return (
    <>
      <InlineFieldRow>
        <InlineField label="Query type" labelWidth={LABEL_WIDTH} htmlFor="op25b-query-type">
          <Select
            inputId="op25b-query-type"
            options={QUERY_TYPE_OPTIONS}
            value={queryType}
            width={24}
            onChange={(v) => update({ queryType: v.value ?? 'asns' })}
          />
        </InlineField>
        {fields.includes('asn') && (
          <InlineField
            label="ASN"
            labelWidth={LABEL_WIDTH}
            htmlFor="op25b-asn"
            tooltip="64500, AS64500 or a variable such as $asn"
          >
            <CommitInput
              id="op25b-asn"
              value={query.asn === undefined ? '' : String(query.asn)}
              valid={(text) => text === '' || parseASNText(text) !== undefined}
              placeholder={ASN_REQUIRED.includes(queryType) ? 'required' : 'any'}
              width={16}
              onCommit={(text) => update({ asn: parseASNText(text) })}
            />
          </InlineField>
        )}
        {fields.includes('country') && (
          <InlineField
            label="Country"
            labelWidth={LABEL_WIDTH}
            htmlFor="op25b-country"
            tooltip="ISO 3166-1 alpha-2 code such as JP, or a variable such as $country"
          >
            <CommitInput
              id="op25b-country"
              value={query.country ?? ''}
              placeholder="any"
              width={10}
              onCommit={(text) => update({ country: text.startsWith('$') ? text : text.toUpperCase() })}
            />
          </InlineField>
        )}
      </InlineFieldRow>
      <InlineFieldRow>
        {fields.includes('family') && (
          <InlineField label="Family" labelWidth={LABEL_WIDTH} htmlFor="op25b-family">
            <Select
              inputId="op25b-family"
              options={[...FAMILY_OPTIONS, ...variables]}
              value={query.family ?? ''}
              allowCustomValue
              width={16}
              onChange={(v) => update({ family: (v.value ?? '') as Family | Variable })}
            />
          </InlineField>
        )}
        {fields.includes('policyClass') && (
          <InlineField label="Class" labelWidth={LABEL_WIDTH} htmlFor="op25b-class">
            <Select
              inputId="op25b-class"
              options={[...CLASS_OPTIONS, ...variables]}
              value={query.policyClass ?? ''}
              allowCustomValue
              width={24}
              onChange={(v) => update({ policyClass: (v.value ?? '') as PolicyClass | Variable })}
            />
          </InlineField>
        )}
        {fields.includes('port') && (
          <InlineField label="Port" labelWidth={LABEL_WIDTH} tooltip="The port whose shares the timeline follows">
            <RadioButtonGroup
              options={PORT_OPTIONS}
              value={query.port ?? 0}
              onChange={(p) => update({ port: p ? (p as Port) : undefined })}
            />
          </InlineField>
        )}
        {fields.includes('limit') && (
          <InlineField
            label="Limit"
            labelWidth={LABEL_WIDTH}
            htmlFor="op25b-limit"
            tooltip={`Rows returned, at most ${MAX_RESULTS_LIMIT}`}
          >
            <CommitInput
              id="op25b-limit"
              type="number"
              value={query.limit === undefined ? '' : String(query.limit)}
              valid={(text) => text === '' || parseLimit(text) !== undefined}
              placeholder={String(DEFAULT_RESULTS_LIMIT)}
              width={12}
              onCommit={(text) => update({ limit: parseLimit(text) })}
            />
          </InlineField>
        )}
      </InlineFieldRow>
    </>
  );
}

interface CommitInputProps {
  id: string;
  value: string;
  placeholder: string;
  width: number;
  type?: string;
  valid?: (text: string) => boolean;
  onCommit: (text: string) => void;
}

// CommitInput edits a text locally and commits it on blur or Enter, so that
// half-typed values are never queried; an invalid text is marked and kept
// out of the query.
function CommitInput({ id, value, placeholder, width, type, valid = () => true, onCommit }: CommitInputProps) {
  const [text, setText] = useState(value);
  useEffect(() => setText(value), [value]);
  const trimmed = text.trim();
  const ok = valid(trimmed);
  const commit = () => {
    if (trimmed !== value && ok) {
      onCommit(trimmed);
    }
  };
  return (
    <Input
      id={id}
      type={type}
      invalid={!ok}
      aria-invalid={!ok}
      value={text}
      placeholder={placeholder}
      width={width}
      onChange={(e: ChangeEvent<HTMLInputElement>) => setText(e.currentTarget.value)}
      onBlur={commit}
      onKeyDown={(e) => e.key === 'Enter' && commit()}
    />
  );
}

/** parseASNText keeps a variable as typed and turns "AS64500" into 64500. */
export function parseASNText(text: string): OP25BQuery['asn'] {
  if (text === '') {
    return undefined;
  }
  if (/^\$(\w+|\{\w+\})$/.test(text)) {
    return text as Variable;
  }
  const m = /^(?:AS)?(\d+)$/i.exec(text);
  return m && Number(m[1]) > 0 ? Number(m[1]) : undefined;
}

function parseLimit(text: string): number | undefined {
  const n = Number(text);
  return text !== '' && Number.isInteger(n) && n > 0 && n <= MAX_RESULTS_LIMIT ? n : undefined;
}

// variableOptions lists the dashboard's variables for the selects.
function variableOptions(): Array<SelectableValue<string>> {
  const variables = getTemplateSrv()?.getVariables() ?? [];
  return variables.map((v) => ({ value: `$${v.name}`, label: `$${v.name}`, description: 'Dashboard variable' }));
}
