import React from 'react';
import { fireEvent, render, screen } from '@testing-library/react';
import { TypedVariableModel } from '@grafana/data';
import { setTemplateSrv, TemplateSrv } from '@grafana/runtime';

import type { DataSource } from '../datasource';
import { OP25BQuery } from '../types';
import { parseASNText, QueryEditor } from './QueryEditor';

function renderEditor(query: OP25BQuery) {
  const onChange = jest.fn();
  const onRunQuery = jest.fn();
  render(<QueryEditor datasource={{} as DataSource} query={query} onChange={onChange} onRunQuery={onRunQuery} />);
  return { onChange, onRunQuery };
}

describe('QueryEditor', () => {
  beforeEach(() =>
    setTemplateSrv({
      getVariables: () => [{ name: 'asn' } as TypedVariableModel, { name: 'family' } as TypedVariableModel],
      replace: (s?: string) => s ?? '',
      containsTemplate: () => false,
      updateTimeRange: () => {},
    } as TemplateSrv)
  );

  it('renders the fields the query type reads', () => {
    renderEditor({ refId: 'A', queryType: 'timeline', asn: '$asn', port: 25 });
    expect(screen.getByText('ASN timeline')).toBeInTheDocument();
    expect(screen.getByLabelText('ASN')).toHaveValue('$asn');
    expect(screen.getByText('Port')).toBeInTheDocument();
    expect(screen.queryByLabelText('Country')).not.toBeInTheDocument();
    expect(screen.queryByLabelText('Limit')).not.toBeInTheDocument();
  });

  it('asks a prefixes query for its ASN, family and port', () => {
    renderEditor({ refId: 'A', queryType: 'prefixes' });
    expect(screen.getByText('ASN prefixes')).toBeInTheDocument();
    expect(screen.getByLabelText('ASN')).toHaveAttribute('placeholder', 'required');
    expect(screen.getByText('Port')).toBeInTheDocument();
    expect(screen.getByLabelText('Family')).toBeInTheDocument();
    expect(screen.queryByLabelText('Country')).not.toBeInTheDocument();
  });

  it('asks a live query for its ASN and port only', () => {
    renderEditor({ refId: 'A', queryType: 'live' });
    expect(screen.getByText('Live results')).toBeInTheDocument();
    expect(screen.getByLabelText('ASN')).toHaveAttribute('placeholder', 'required');
    expect(screen.getByText('Port')).toBeInTheDocument();
    expect(screen.queryByLabelText('Family')).not.toBeInTheDocument();
    expect(screen.queryByLabelText('Country')).not.toBeInTheDocument();
  });

  it('calls onChange and runs the query when the query type changes', () => {
    const { onChange, onRunQuery } = renderEditor({ refId: 'A', queryType: 'asns' });
    const select = screen.getByLabelText('Query type');
    fireEvent.keyDown(select, { key: 'ArrowDown' });
    fireEvent.click(screen.getByText('Countries'));
    expect(onChange).toHaveBeenCalledWith({ refId: 'A', queryType: 'countries' });
    expect(onRunQuery).toHaveBeenCalled();
  });

  it('offers the dashboard variables for the family', () => {
    const { onChange } = renderEditor({ refId: 'A', queryType: 'countries', family: '' });
    fireEvent.keyDown(screen.getByLabelText('Family'), { key: 'ArrowDown' });
    fireEvent.click(screen.getByText('$family'));
    expect(onChange).toHaveBeenCalledWith({ refId: 'A', queryType: 'countries', family: '$family' });
  });

  it('commits the ASN on blur, parsed, and keeps an invalid one out of the query', () => {
    const { onChange } = renderEditor({ refId: 'A', queryType: 'peers' });
    const input = screen.getByLabelText('ASN');
    fireEvent.change(input, { target: { value: 'AS64500' } });
    expect(onChange).not.toHaveBeenCalled();
    fireEvent.blur(input);
    expect(onChange).toHaveBeenCalledWith({ refId: 'A', queryType: 'peers', asn: 64500 });

    onChange.mockClear();
    fireEvent.change(input, { target: { value: 'ASX' } });
    fireEvent.blur(input);
    expect(onChange).not.toHaveBeenCalled();
    expect(input).toHaveAttribute('aria-invalid', 'true');
  });

  it('bounds the results limit', () => {
    const { onChange } = renderEditor({ refId: 'A', queryType: 'results' });
    const input = screen.getByLabelText('Limit');
    fireEvent.change(input, { target: { value: '20000' } });
    fireEvent.blur(input);
    expect(onChange).not.toHaveBeenCalled();
    fireEvent.change(input, { target: { value: '500' } });
    fireEvent.keyDown(input, { key: 'Enter' });
    expect(onChange).toHaveBeenCalledWith({ refId: 'A', queryType: 'results', limit: 500 });
  });

  it('sets and clears the timeline port', () => {
    const { onChange } = renderEditor({ refId: 'A', queryType: 'timeline', asn: 64500 });
    fireEvent.click(screen.getByLabelText('587'));
    expect(onChange).toHaveBeenLastCalledWith({ refId: 'A', queryType: 'timeline', asn: 64500, port: 587 });
  });
});

describe('parseASNText', () => {
  it.each<[string, OP25BQuery['asn']]>([
    ['', undefined],
    ['64500', 64500],
    ['AS64500', 64500],
    ['$asn', '$asn'],
    ['${asn}', '${asn}'],
    ['$', undefined],
    ['AS', undefined],
    ['0', undefined],
  ])('parseASNText(%p) = %p', (text, want) => {
    expect(parseASNText(text)).toBe(want);
  });
});
