import React from 'react';
import { fireEvent, render, screen } from '@testing-library/react';
import { DataSourceSettings } from '@grafana/data';

import { OP25BOptions, OP25BSecureOptions } from '../types';
import { ConfigEditor } from './ConfigEditor';

type Settings = DataSourceSettings<OP25BOptions, OP25BSecureOptions>;

function settings(overrides: Partial<Settings> = {}): Settings {
  return {
    id: 1,
    uid: 'op25b',
    orgId: 1,
    name: 'OP25B Observatory',
    type: 'op25b-observatory-datasource',
    typeName: 'OP25B Observatory',
    typeLogoUrl: '',
    access: 'proxy',
    url: '',
    user: '',
    database: '',
    basicAuth: false,
    basicAuthUser: '',
    isDefault: false,
    withCredentials: false,
    readOnly: false,
    version: 1,
    jsonData: { address: 'collector:8443' },
    secureJsonFields: {},
    ...overrides,
  };
}

function renderEditor(options: Settings) {
  const onOptionsChange = jest.fn();
  render(<ConfigEditor options={options} onOptionsChange={onOptionsChange} />);
  return onOptionsChange;
}

describe('ConfigEditor', () => {
  it('writes the API token to secureJsonData, never to jsonData', () => {
    const onOptionsChange = renderEditor(settings());
    fireEvent.change(screen.getByLabelText('API token'), { target: { value: 's3cret' } });
    const saved: Settings = onOptionsChange.mock.calls[0][0];
    expect(saved.secureJsonData).toEqual({ apiToken: 's3cret' });
    expect(saved.jsonData).toEqual({ address: 'collector:8443' });
    expect(JSON.stringify(saved.jsonData)).not.toContain('s3cret');
  });

  it('writes the CA certificate to secureJsonData', () => {
    const onOptionsChange = renderEditor(settings());
    const pem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
    fireEvent.change(screen.getByLabelText('CA certificate'), { target: { value: pem } });
    const saved: Settings = onOptionsChange.mock.calls[0][0];
    expect(saved.secureJsonData).toEqual({ tlsCACert: pem });
    expect(saved.jsonData).toEqual({ address: 'collector:8443' });
  });

  it('writes the address, server name and skip-verify to jsonData', () => {
    const onOptionsChange = renderEditor(settings());
    fireEvent.change(screen.getByLabelText(/Address/), { target: { value: 'collector.example.org:8443' } });
    expect(onOptionsChange.mock.calls[0][0].jsonData).toEqual({ address: 'collector.example.org:8443' });
    fireEvent.change(screen.getByLabelText('Server name'), { target: { value: 'collector.example.org' } });
    expect(onOptionsChange.mock.calls[1][0].jsonData).toEqual({
      address: 'collector:8443',
      serverName: 'collector.example.org',
    });
    fireEvent.click(screen.getByLabelText('Skip TLS verification'));
    expect(onOptionsChange.mock.calls[2][0].jsonData).toEqual({ address: 'collector:8443', tlsSkipVerify: true });
  });

  it('shows a configured token as set and resets it', () => {
    const onOptionsChange = renderEditor(settings({ secureJsonFields: { apiToken: true } }));
    fireEvent.click(screen.getAllByRole('button', { name: 'Reset' })[0]);
    const saved: Settings = onOptionsChange.mock.calls[0][0];
    expect(saved.secureJsonFields.apiToken).toBe(false);
    expect(saved.secureJsonData?.apiToken).toBe('');
  });
});
