import { DataSourceInstanceSettings, FieldType, ScopedVars, toDataFrame, TypedVariableModel } from '@grafana/data';
import { setTemplateSrv, TemplateSrv } from '@grafana/runtime';
import { firstValueFrom } from 'rxjs';

import { changesAnnotations, changesToEvents, DataSource, parseASN } from './datasource';
import { OP25BOptions, OP25BQuery } from './types';

// fakeTemplateSrv resolves $name and ${name} from a fixed map, scoped
// variables first, as Grafana's template service does.
function fakeTemplateSrv(values: Record<string, string>): TemplateSrv {
  return {
    getVariables: () => Object.keys(values).map((name) => ({ name }) as TypedVariableModel),
    replace: (target?: string, scopedVars?: ScopedVars) =>
      (target ?? '').replace(/\$\{(\w+)\}|\$(\w+)/g, (match, braced, bare) => {
        const name = braced ?? bare;
        const scoped = scopedVars?.[name]?.value;
        return scoped !== undefined ? String(scoped) : (values[name] ?? match);
      }),
    containsTemplate: (target?: string) => Boolean(target?.includes('$')),
    updateTimeRange: () => {},
  };
}

function newDataSource(): DataSource {
  const settings = {
    id: 1,
    uid: 'op25b',
    type: 'op25b-observatory-datasource',
    name: 'OP25B Observatory',
    access: 'proxy',
    jsonData: { address: 'collector:8443' },
    meta: { id: 'op25b-observatory-datasource' },
    readOnly: false,
  } as unknown as DataSourceInstanceSettings<OP25BOptions>;
  return new DataSource(settings);
}

describe('DataSource', () => {
  beforeEach(() => setTemplateSrv(fakeTemplateSrv({ asn: 'AS64500', country: 'jp', family: 'all', cls: 'op25b' })));

  it('defaults to the ASN adoption table over both families and every class', () => {
    expect(newDataSource().getDefaultQuery('explore' as never)).toEqual({
      queryType: 'asns',
      family: '',
      policyClass: '',
    });
  });

  it.each<[string, Partial<OP25BQuery>, Partial<OP25BQuery>]>([
    ['asn variable with AS prefix', { asn: '$asn' }, { asn: 64500 }],
    ['asn braced variable', { asn: '${asn}' }, { asn: 64500 }],
    ['asn number untouched', { asn: 64501 }, { asn: 64501 }],
    ['country variable upper-cased', { country: '$country' }, { country: 'JP' }],
    ['family All means both', { family: '$family' }, { family: '' }],
    ['class variable upper-cased', { policyClass: '$cls' }, { policyClass: 'OP25B' }],
    [
      'plain values kept',
      { family: 'ipv6', policyClass: 'OPEN', port: 587, limit: 10 },
      { family: 'ipv6', policyClass: 'OPEN', port: 587, limit: 10 },
    ],
  ])('applyTemplateVariables: %s', (_, given, want) => {
    const query: OP25BQuery = { refId: 'A', queryType: 'timeline', ...given };
    expect(newDataSource().applyTemplateVariables(query, {})).toEqual({ refId: 'A', queryType: 'timeline', ...want });
  });

  it('applyTemplateVariables prefers scoped variables (repeated panels)', () => {
    const query: OP25BQuery = { refId: 'A', queryType: 'peers', asn: '$asn' };
    const scoped: ScopedVars = { asn: { text: '64511', value: '64511' } };
    expect(newDataSource().applyTemplateVariables(query, scoped).asn).toBe(64511);
  });

  it('applyTemplateVariables drops an empty ASN and passes anything else on for the backend to reject', () => {
    setTemplateSrv(fakeTemplateSrv({ none: '', bad: 'AS64x' }));
    const ds = newDataSource();
    expect(ds.applyTemplateVariables({ refId: 'A', queryType: 'timeline', asn: '$none' }, {})).not.toHaveProperty(
      'asn'
    );
    expect(ds.applyTemplateVariables({ refId: 'A', queryType: 'timeline', asn: '$bad' }, {}).asn).toBe('AS64x');
    expect(ds.applyTemplateVariables({ refId: 'A', queryType: 'timeline', asn: '$unknown' }, {}).asn).toBe('$unknown');
  });

  it('has the changes annotation support', () => {
    expect(newDataSource().annotations).toBe(changesAnnotations);
  });
});

describe('parseASN', () => {
  it.each<[number | string, number | undefined]>([
    [64500, 64500],
    ['64500', 64500],
    ['as64500', 64500],
    [' AS64500 ', 64500],
    ['', undefined],
    ['AS', undefined],
    ['64500x', undefined],
    [0, undefined],
    [-1, undefined],
    [1.5, undefined],
    [4294967296, undefined],
  ])('parseASN(%p) = %p', (given, want) => {
    expect(parseASN(given)).toBe(want);
  });
});

describe('changesAnnotations', () => {
  it('prepares legacy and current annotations as a changes query', () => {
    const legacy = changesAnnotations.prepareAnnotation!({ name: 'Changes', enable: true, iconColor: 'red' } as never);
    expect(legacy.target).toEqual({ refId: 'Anno', queryType: 'changes' });
    const current = changesAnnotations.prepareAnnotation!({
      name: 'Changes',
      enable: true,
      iconColor: 'red',
      target: { refId: 'A', queryType: 'asns', asn: '$asn' },
    });
    expect(current.target).toEqual({ refId: 'A', queryType: 'changes', asn: '$asn' });
  });

  it('runs a changes query whatever type the target names', () => {
    const query = changesAnnotations.prepareQuery!({
      name: 'Changes',
      enable: true,
      iconColor: 'red',
      target: { refId: '', queryType: 'timeline', asn: '$asn', country: 'JP' },
    });
    expect(query).toEqual({ refId: 'Anno', queryType: 'changes', asn: '$asn', country: 'JP' });
    expect(changesAnnotations.prepareQuery!({ name: 'x', enable: true, iconColor: 'red' })).toBeUndefined();
  });

  it('defaults to a changes query', () => {
    expect(changesAnnotations.getDefaultQuery!()).toEqual({ queryType: 'changes' });
  });

  it('maps each change to an event at the day it took effect', async () => {
    const day = Date.UTC(2026, 2, 7);
    // The changes frame as the backend sends it (pkg/plugin/testdata/changes.jsonc).
    const frame = toDataFrame({
      name: 'changes',
      fields: [
        { name: 'time', type: FieldType.time, values: [day, day + 86400000] },
        { name: 'asn', type: FieldType.number, values: [64506, 64507] },
        { name: 'family', type: FieldType.string, values: ['ipv4', 'ipv6'] },
        { name: 'from', type: FieldType.string, values: ['OPEN', 'MIXED'] },
        { name: 'to', type: FieldType.string, values: ['OP25B', 'ALL_SMTP_BLOCKED'] },
        { name: 'country', type: FieldType.string, values: ['JP', 'JP'] },
        {
          name: 'text',
          type: FieldType.string,
          values: ['AS64506 IPv4 turned to OP25B', 'AS64507 IPv6 turned to ALL_SMTP_BLOCKED'],
        },
        { name: 'tags', type: FieldType.string, values: ['AS64506,ipv4,OP25B', 'AS64507,ipv6,ALL_SMTP_BLOCKED'] },
      ],
    });
    const events = await firstValueFrom(
      changesAnnotations.processEvents!({ name: 'x', enable: true, iconColor: 'red' }, [frame])
    );
    expect(events).toEqual([
      { time: day, text: 'AS64506 IPv4 turned to OP25B', tags: ['AS64506', 'ipv4', 'OP25B'] },
      {
        time: day + 86400000,
        text: 'AS64507 IPv6 turned to ALL_SMTP_BLOCKED',
        tags: ['AS64507', 'ipv6', 'ALL_SMTP_BLOCKED'],
      },
    ]);
  });

  it('skips frames without a time field and tolerates missing text and tags', () => {
    const noTime = toDataFrame({ fields: [{ name: 'asn', type: FieldType.number, values: [64500] }] });
    const empty = toDataFrame({ name: 'changes', fields: [{ name: 'time', type: FieldType.time, values: [] }] });
    const bare = toDataFrame({
      fields: [{ name: 'changed_at', type: FieldType.time, values: ['2026-03-01T00:00:00Z'] }],
    });
    expect(changesToEvents([noTime, empty, bare])).toEqual([{ time: Date.UTC(2026, 2, 1), text: '', tags: [] }]);
  });
});
