/*
 * The libraries Grafana shares with plugins at run time (as in
 * @grafana/create-plugin's .config/bundler/externals.ts): never bundled.
 */
module.exports.externals = [
  'lodash',
  'jquery',
  'moment',
  'slate',
  'emotion',
  '@emotion/react',
  '@emotion/css',
  'prismjs',
  'slate-plain-serializer',
  '@grafana/slate-react',
  'react',
  'react-dom',
  'react-redux',
  'redux',
  'rxjs',
  'react-router',
  'd3',
  'angular',
  /^@grafana\/ui/i,
  /^@grafana\/runtime/i,
  /^@grafana\/data/i,
  // Legacy SDK imports: "grafana/app/..." resolve to "app/...".
  ({ request }, callback) => {
    const prefix = 'grafana/';
    if (request && request.startsWith(prefix)) {
      return callback(undefined, request.slice(prefix.length));
    }
    callback();
  },
];
