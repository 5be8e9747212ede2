/**
 * @jest-environment node
 */
// plugin.json is the contract with Grafana and with the Go backend.
import plugin from './plugin.json';

describe('plugin.json', () => {
  it('declares the backend data source with alerting, annotations and live streams', () => {
    expect(plugin).toMatchObject({
      id: 'op25b-observatory-datasource',
      type: 'datasource',
      name: 'OP25B Observatory',
      backend: true,
      executable: 'gpx_op25b',
      alerting: true,
      annotations: true,
      // The live query's panels subscribe to the backend's streams
      // (pkg/plugin/live.go) through Grafana Live.
      streaming: true,
      dependencies: { grafanaDependency: '>=10.4.0' },
      info: { version: '%VERSION%', updated: '%TODAY%', logos: { small: 'img/logo.svg', large: 'img/logo.svg' } },
    });
  });
});
