import {
  AnnotationEvent,
  AnnotationQuery,
  AnnotationSupport,
  CoreApp,
  DataFrame,
  DataSourceInstanceSettings,
  FieldType,
  ScopedVars,
} from '@grafana/data';
import { DataSourceWithBackend, getTemplateSrv, TemplateSrv } from '@grafana/runtime';
import { Observable, of } from 'rxjs';

import { DEFAULT_QUERY, Family, OP25BOptions, OP25BQuery, PolicyClass } from './types';

/**
 * DataSource is the browser half of the plugin: the Go backend answers every
 * query (QueryData), health check and alert. Here we only resolve dashboard
 * variables and turn policy changes into annotations.
 */
export class DataSource extends DataSourceWithBackend<OP25BQuery, OP25BOptions> {
  constructor(instanceSettings: DataSourceInstanceSettings<OP25BOptions>) {
    super(instanceSettings);
    this.annotations = changesAnnotations;
  }

  getDefaultQuery(_: CoreApp): Partial<OP25BQuery> {
    return DEFAULT_QUERY;
  }

  applyTemplateVariables(query: OP25BQuery, scopedVars: ScopedVars): OP25BQuery {
    return interpolateQuery(query, scopedVars, getTemplateSrv());
  }
}

/**
 * interpolateQuery replaces the variables of every field that may hold one
 * and normalises the result to what the backend reads: asn a number
 * ("AS64500" and "64500" both work; empty means none), country upper case,
 * "All" of family and class meaning no filter.
 */
export function interpolateQuery(query: OP25BQuery, scopedVars: ScopedVars, templateSrv: TemplateSrv): OP25BQuery {
  const replace = (value: string) => templateSrv.replace(value, scopedVars).trim();
  const out: OP25BQuery = { ...query };
  if (query.asn !== undefined) {
    const raw = typeof query.asn === 'string' ? replace(query.asn) : query.asn;
    if (raw === '') {
      delete out.asn;
    } else {
      // A value that is no ASN goes as it is, for the backend's error to name it.
      out.asn = parseASN(raw) ?? (String(raw) as OP25BQuery['asn']);
    }
  }
  if (query.country !== undefined) {
    const country = replace(query.country).toUpperCase();
    out.country = noFilter(country) ? '' : country;
  }
  if (query.family !== undefined) {
    const family = replace(query.family).toLowerCase();
    out.family = (noFilter(family) ? '' : family) as Family;
  }
  if (query.policyClass !== undefined) {
    const cls = replace(query.policyClass).toUpperCase();
    out.policyClass = (noFilter(cls) ? '' : cls) as PolicyClass;
  }
  return out;
}

// noFilter reports whether an interpolated value means "any": empty, or the
// "All" of a variable (allValue "all" or "*", or Grafana's own $__all).
function noFilter(value: string): boolean {
  return ['', 'all', '*', '$__all'].includes(value.toLowerCase());
}

/** parseASN accepts 64500 and "AS64500"; it returns undefined for anything else. */
export function parseASN(value: number | string): number | undefined {
  let n = value;
  if (typeof n === 'string') {
    const m = /^(?:AS)?(\d+)$/i.exec(n.trim());
    if (!m) {
      return undefined;
    }
    n = Number(m[1]);
  }
  return Number.isInteger(n) && n > 0 && n <= 0xffffffff ? n : undefined;
}

/**
 * changesAnnotations makes the "changes" query usable as a dashboard
 * annotation: whatever the annotation's target says, it runs a changes query,
 * and each policy change becomes one event at the day it took effect.
 */
export const changesAnnotations: AnnotationSupport<OP25BQuery> = {
  getDefaultQuery: () => ({ queryType: 'changes' }),

  prepareAnnotation(json: AnnotationQuery<OP25BQuery>): AnnotationQuery<OP25BQuery> {
    const target = json.target ?? ({ refId: 'Anno' } as OP25BQuery);
    return { ...json, target: { ...target, queryType: 'changes' } };
  },

  prepareQuery(anno: AnnotationQuery<OP25BQuery>): OP25BQuery | undefined {
    if (!anno.target) {
      return undefined;
    }
    return { ...anno.target, refId: anno.target.refId || 'Anno', queryType: 'changes' };
  },

  processEvents(_: AnnotationQuery<OP25BQuery>, frames: DataFrame[]): Observable<AnnotationEvent[] | undefined> {
    return of(changesToEvents(frames));
  },
};

/**
 * changesToEvents maps the frames of a changes query to annotation events:
 * one per change, at the day it took effect, with the backend's "text"
 * ("AS64500 IPv4 turned to OP25B") and comma-separated "tags".
 */
export function changesToEvents(frames: DataFrame[]): AnnotationEvent[] {
  const events: AnnotationEvent[] = [];
  for (const frame of frames) {
    const time = frame.fields.find((f) => f.type === FieldType.time);
    const text = frame.fields.find((f) => f.name === 'text');
    const tags = frame.fields.find((f) => f.name === 'tags');
    if (!time) {
      continue;
    }
    for (let i = 0; i < time.values.length; i++) {
      events.push({
        time: toMillis(time.values[i]),
        text: text?.values[i] ?? '',
        tags: tags
          ? String(tags.values[i] ?? '')
              .split(',')
              .filter(Boolean)
          : [],
      });
    }
  }
  return events;
}

function toMillis(value: unknown): number {
  if (typeof value === 'number') {
    return value;
  }
  if (value instanceof Date) {
    return value.getTime();
  }
  return Date.parse(String(value));
}
