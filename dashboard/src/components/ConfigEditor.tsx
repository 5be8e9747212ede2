import React from 'react';
import {
  DataSourcePluginOptionsEditorProps,
  onUpdateDatasourceJsonDataOption,
  onUpdateDatasourceJsonDataOptionChecked,
  onUpdateDatasourceSecureJsonDataOption,
  updateDatasourcePluginResetOption,
} from '@grafana/data';
import { FieldSet, InlineField, InlineSwitch, Input, SecretInput, SecretTextArea } from '@grafana/ui';

import { OP25BOptions, OP25BSecureOptions } from '../types';

type Props = DataSourcePluginOptionsEditorProps<OP25BOptions, OP25BSecureOptions>;

const LABEL_WIDTH = 22;

/**
 * ConfigEditor edits where the collector's gRPC DatasetService listens and
 * how to trust it. The API token and the CA certificate go to secureJsonData:
 * Grafana encrypts them and never sends them back to the browser.
 */
export function ConfigEditor(props: Props) {
  const { options } = props;
  const { jsonData, secureJsonFields } = options;

  return (
    <>
      <FieldSet label="Collector">
        <InlineField
          label="Address"
          labelWidth={LABEL_WIDTH}
          htmlFor="op25b-address"
          tooltip="host:port of the collector's gRPC listener (its --listen flag), such as collector:8443"
          required
        >
          <Input
            id="op25b-address"
            value={jsonData.address ?? ''}
            placeholder="collector.example.org:8443"
            width={40}
            onChange={onUpdateDatasourceJsonDataOption(props, 'address')}
          />
        </InlineField>
        <InlineField
          label="API token"
          labelWidth={LABEL_WIDTH}
          htmlFor="op25b-api-token"
          tooltip="Sent as a bearer token with every call. The collector's dataset service is public (rate-limited per address): leave empty unless a proxy in front of it asks for one"
        >
          <SecretInput
            id="op25b-api-token"
            isConfigured={Boolean(secureJsonFields?.apiToken)}
            value={options.secureJsonData?.apiToken ?? ''}
            placeholder="token"
            width={40}
            onReset={() => updateDatasourcePluginResetOption(props, 'apiToken')}
            onChange={onUpdateDatasourceSecureJsonDataOption(props, 'apiToken')}
          />
        </InlineField>
      </FieldSet>
      <FieldSet label="TLS">
        <InlineField
          label="CA certificate"
          labelWidth={LABEL_WIDTH}
          htmlFor="op25b-tls-ca-cert"
          tooltip="PEM of the CA that signed the collector's certificate (its --data-dir/tls/ca.pem when it made its own); empty trusts the system's CAs"
        >
          <SecretTextArea
            id="op25b-tls-ca-cert"
            isConfigured={Boolean(secureJsonFields?.tlsCACert)}
            value={options.secureJsonData?.tlsCACert ?? ''}
            placeholder="-----BEGIN CERTIFICATE-----"
            cols={60}
            rows={6}
            onReset={() => updateDatasourcePluginResetOption(props, 'tlsCACert')}
            onChange={onUpdateDatasourceSecureJsonDataOption(props, 'tlsCACert')}
          />
        </InlineField>
        <InlineField
          label="Server name"
          labelWidth={LABEL_WIDTH}
          htmlFor="op25b-server-name"
          tooltip="Name to verify in the collector's certificate when it differs from the address's host"
        >
          <Input
            id="op25b-server-name"
            value={jsonData.serverName ?? ''}
            placeholder="collector.example.org"
            width={40}
            onChange={onUpdateDatasourceJsonDataOption(props, 'serverName')}
          />
        </InlineField>
        <InlineField
          label="Skip TLS verification"
          labelWidth={LABEL_WIDTH}
          htmlFor="op25b-tls-skip-verify"
          tooltip="Accept any certificate: for testing only"
        >
          <InlineSwitch
            id="op25b-tls-skip-verify"
            value={jsonData.tlsSkipVerify ?? false}
            onChange={onUpdateDatasourceJsonDataOptionChecked(props, 'tlsSkipVerify')}
          />
        </InlineField>
      </FieldSet>
    </>
  );
}
