/**
 * @jest-environment node
 */
// The provisioned dashboards and their provisioning files, checked against
// what they rely on: the data source uids the provisioning creates and the
// query types the backend answers. Their PromQL expressions are parsed, and
// the metrics they select checked against the collector's, by
// TestDashboardQueries in deploy/deploytest.
import fs from 'fs';
import path from 'path';
import { parse } from 'yaml';

import { MAX_RESULTS_LIMIT, PORTS, QUERY_FIELDS, QUERY_TYPES, QueryType } from './types';

const DASHBOARD_ROOT = path.resolve(__dirname, '..');
const PROVISIONING = path.join(DASHBOARD_ROOT, 'provisioning');
// Where the container mounts dashboard/provisioning.
const GRAFANA_PROVISIONING = '/etc/grafana/provisioning';

const OP25B = 'op25b';
const PROMETHEUS = 'op25b-prometheus';
const COMMON_FIELDS = ['refId', 'datasource', 'queryType', 'hide'];

function walk(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? walk(p) : [p];
  });
}

const files = walk(PROVISIONING);
const dashboardFiles = files.filter((f) => f.endsWith('.json'));
const yamlFiles = files.filter((f) => /\.ya?ml$/.test(f));
const dashboards = dashboardFiles.map((f) => ({
  file: path.relative(PROVISIONING, f),
  json: JSON.parse(fs.readFileSync(f, 'utf8')),
}));

interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: { type: string; uid: string };
  targets?: Array<Record<string, unknown>>;
  panels?: Panel[];
}

function panelsOf(dashboard: { panels: Panel[] }): Panel[] {
  return dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
}

/** variablesIn lists the dashboard variables a value refers to ($asn, ${asn}, ${asn:csv}). */
function variablesIn(value: unknown): string[] {
  if (typeof value !== 'string') {
    return [];
  }
  return [...value.matchAll(/\$\{(\w+)(?::[^}]*)?\}|\$(\w+)/g)]
    .map((m) => m[1] ?? m[2])
    .filter((n) => !n.startsWith('__'));
}

describe('provisioned dashboards', () => {
  it('are the three dashboards, each with its own uid', () => {
    expect(dashboards.map((d) => d.json.title).sort()).toEqual(['ASN detail', 'Network health', 'OP25B adoption']);
    expect(new Set(dashboards.map((d) => d.json.uid)).size).toBe(dashboards.length);
  });

  describe.each(dashboards)('$file', ({ json }) => {
    const panels = panelsOf(json);
    const variables = new Set<string>(json.templating.list.map((v: { name: string }) => v.name));

    it('is in the schema of Grafana 10.4 and 11', () => {
      expect(json.schemaVersion).toBeGreaterThanOrEqual(39);
      expect(json.schemaVersion).toBeLessThanOrEqual(41);
      expect(json.id).toBeUndefined(); // provisioning assigns it
    });

    it('has panels with distinct ids that fit the grid without overlapping', () => {
      expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
      const taken = new Set<string>();
      for (const { title, gridPos: g } of panels) {
        expect(g.x >= 0 && g.w > 0 && g.x + g.w <= 24 && g.h > 0).toBe(true);
        for (let x = g.x; x < g.x + g.w; x++) {
          for (let y = g.y; y < g.y + g.h; y++) {
            if (taken.has(`${x},${y}`)) {
              throw new Error(`panel "${title}" overlaps another at ${x},${y}`);
            }
            taken.add(`${x},${y}`);
          }
        }
      }
    });

    it.each(panels.filter((p) => p.targets).map((p) => [p.title, p] as const))(
      'panel "%s" queries an OP25B data source',
      (_, panel) => {
        expect([OP25B, PROMETHEUS]).toContain(panel.datasource?.uid);
        expect(panel.targets!.length).toBeGreaterThan(0);
        for (const target of panel.targets!) {
          expect(target.datasource).toEqual(panel.datasource);
          if (panel.datasource!.uid === OP25B) {
            expect(panel.datasource!.type).toBe('op25b-observatory-datasource');
            checkOP25BTarget(target, variables);
          } else {
            expect(panel.datasource!.type).toBe('prometheus');
            expect(typeof target.expr).toBe('string');
            expect(target.expr).not.toBe('');
          }
        }
      }
    );

    it('annotates with policy changes from the OP25B data source', () => {
      for (const anno of json.annotations.list.filter((a: { builtIn?: number }) => !a.builtIn)) {
        expect(anno.datasource).toEqual({ type: 'op25b-observatory-datasource', uid: OP25B });
        expect(anno.target.queryType).toBe('changes');
        checkOP25BTarget(anno.target, variables);
      }
    });
  });

  it('"ASN detail" has $asn and draws changes as annotations', () => {
    const detail = dashboards.find((d) => d.json.title === 'ASN detail')!.json;
    const asn = detail.templating.list.find((v: { name: string }) => v.name === 'asn');
    expect(asn).toMatchObject({ type: 'textbox', query: '64500' });
    expect(detail.templating.list.map((v: { name: string }) => v.name)).toContain('family');
    expect(detail.annotations.list).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          enable: true,
          target: expect.objectContaining({ queryType: 'changes', asn: '$asn' }),
        }),
      ])
    );
  });

  it('"Network health" shows the results agents lost before upload, by cause', () => {
    const health = dashboards.find((d) => d.json.title === 'Network health')!.json;
    const exprs = panelsOf(health).flatMap((p) => (p.targets ?? []).map((t) => String(t.expr)));
    expect(exprs).toContainEqual(
      expect.stringMatching(/^sum by \(cause\) \(increase\(op25b_agent_results_lost_total\[\$__rate_interval\]\)\)$/)
    );
    expect(exprs).toContain('sum(increase(op25b_agent_results_lost_total[24h]))');
  });

  it('"OP25B adoption" places countries on the Geomap by ISO code', () => {
    const adoption = dashboards.find((d) => d.json.title === 'OP25B adoption')!.json;
    const geomap = panelsOf(adoption).find((p) => p.type === 'geomap') as Panel & { options: any };
    expect(geomap.targets![0].queryType).toBe('countries');
    expect(geomap.options.layers[0].location).toEqual({
      mode: 'lookup',
      lookup: 'country',
      gazetteer: 'public/gazetteer/countries.json',
    });
  });
});

function checkOP25BTarget(target: Record<string, unknown>, variables: Set<string>) {
  expect(QUERY_TYPES).toContain(target.queryType);
  const read: string[] = [...COMMON_FIELDS, ...QUERY_FIELDS[target.queryType as QueryType]];
  for (const key of Object.keys(target)) {
    if (!read.includes(key)) {
      throw new Error(`query ${JSON.stringify(target)}: a ${target.queryType} query does not read ${key}`);
    }
  }
  if (target.port !== undefined) {
    expect(PORTS).toContain(target.port);
  }
  if (target.limit !== undefined) {
    expect(target.limit).toBeLessThanOrEqual(MAX_RESULTS_LIMIT);
  }
  for (const value of Object.values(target)) {
    for (const name of variablesIn(value)) {
      if (!variables.has(name)) {
        throw new Error(`query ${JSON.stringify(target)} uses $${name}, which the dashboard does not define`);
      }
    }
  }
}

describe('provisioning YAML', () => {
  const parsed = Object.fromEntries(
    yamlFiles.map((f) => [path.relative(PROVISIONING, f), parse(fs.readFileSync(f, 'utf8'))])
  );
  const pluginId = JSON.parse(fs.readFileSync(path.join(__dirname, 'plugin.json'), 'utf8')).id;

  it('parses', () => {
    expect(Object.keys(parsed).sort()).toEqual(['dashboards/op25b.yaml', 'datasources/op25b.yaml']);
    for (const doc of Object.values(parsed)) {
      expect(doc.apiVersion).toBe(1);
    }
  });

  it('creates the data sources the dashboards use', () => {
    const sources = parsed['datasources/op25b.yaml'].datasources;
    expect(sources).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          uid: OP25B,
          type: pluginId,
          jsonData: expect.objectContaining({ address: '${OP25B_COLLECTOR_GRPC}' }),
        }),
        expect.objectContaining({ uid: PROMETHEUS, type: 'prometheus', url: '${OP25B_PROMETHEUS_URL}' }),
      ])
    );
    const op25b = sources.find((s: { uid: string }) => s.uid === OP25B);
    expect(op25b.secureJsonData).toEqual({ tlsCACert: '$__file{/etc/op25b/ca.pem}' });
  });

  it('loads the dashboards from where the container mounts them', () => {
    const providers = parsed['dashboards/op25b.yaml'].providers;
    expect(providers).toHaveLength(1);
    const dirs = new Set(
      dashboardFiles.map((f) => path.posix.join(GRAFANA_PROVISIONING, path.relative(PROVISIONING, path.dirname(f))))
    );
    expect([...dirs]).toEqual([providers[0].options.path]);
  });
});
