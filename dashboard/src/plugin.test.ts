/**
 * @jest-environment node
 */
// plugin.json is the contract with Grafana and with the Go backend.
import plugin from './plugin.json';

describe('plugin.json', () => {
  it('declares the backend data source with alerting and annotations', () => {
    expect(plugin).toMatchObject({
      id: 'op25b-observatory-datasource',
      type: 'datasource',
      name: 'OP25B Observatory',
      backend: true,
      executable: 'gpx_op25b',
      alerting: true,
      annotations: true,
      dependencies: { grafanaDependency: '>=10.4.0' },
      info: { version: '%VERSION%', updated: '%TODAY%', logos: { small: 'img/logo.svg', large: 'img/logo.svg' } },
    });
  });
});
