/*
 * Webpack configuration in the shape of @grafana/create-plugin's
 * (.config/webpack/webpack.config.ts), trimmed to what this plugin uses and
 * written in CommonJS so that it runs on node 20 without ts-node: an AMD
 * bundle dist/module.js with Grafana's shared libraries as externals, and
 * plugin.json, README.md, CHANGELOG.md, LICENSE and the logo copied into
 * dist/ with %VERSION% and %TODAY% replaced.
 */
const path = require('path');
const fs = require('fs');
const CopyWebpackPlugin = require('copy-webpack-plugin');

const { DIST_DIR, SOURCE_DIR } = require('../bundler/constants');
const { externals } = require('../bundler/externals');

const root = process.cwd();
const pluginJson = JSON.parse(fs.readFileSync(path.resolve(root, SOURCE_DIR, 'plugin.json'), 'utf8'));
const { version } = JSON.parse(fs.readFileSync(path.resolve(root, 'package.json'), 'utf8'));
const logoPaths = [...new Set([pluginJson.info?.logos?.small, pluginJson.info?.logos?.large])].filter(Boolean);

// stamp fills the placeholders create-plugin's templates use.
function stamp(content) {
  return content
    .toString()
    .replace(/%VERSION%/g, version)
    .replace(/%TODAY%/g, new Date().toISOString().substring(0, 10))
    .replace(/%PLUGIN_ID%/g, pluginJson.id);
}

module.exports = (env) => ({
  cache: {
    type: 'filesystem',
    buildDependencies: { config: [__filename] },
  },
  context: path.join(root, SOURCE_DIR),
  devtool: env.production ? 'source-map' : 'eval-source-map',
  entry: { module: './module.ts' },
  externals,
  mode: env.production ? 'production' : 'development',
  module: {
    rules: [
      {
        exclude: /node_modules/,
        test: /\.[tj]sx?$/,
        use: {
          loader: 'swc-loader',
          options: {
            jsc: {
              baseUrl: path.resolve(root, SOURCE_DIR),
              target: 'es2015',
              loose: false,
              parser: { syntax: 'typescript', tsx: true, decorators: false, dynamicImport: true },
              // The classic runtime (React.createElement) keeps the bundle
              // loadable by Grafana versions that do not share react/jsx-runtime.
              transform: { react: { runtime: 'classic' } },
            },
          },
        },
      },
      {
        test: /\.(png|jpe?g|gif|svg)$/,
        type: 'asset/resource',
        generator: { filename: env.production ? '[hash][ext]' : '[file]' },
      },
    ],
  },
  output: {
    clean: {
      // The Go backend's executables (gpx_op25b_linux_amd64, ...) share dist/.
      keep: /(.*?_(amd64|arm(64)?)(.exe)?|go_plugin_build_manifest)/,
    },
    filename: '[name].js',
    library: { type: 'amd' },
    path: path.resolve(root, DIST_DIR),
    publicPath: `public/plugins/${pluginJson.id}/`,
    uniqueName: pluginJson.id,
  },
  plugins: [
    new CopyWebpackPlugin({
      patterns: [
        { from: 'README.md', to: '.', transform: stamp },
        { from: 'CHANGELOG.md', to: '.' },
        { from: 'plugin.json', to: '.', transform: stamp },
        // The repository has no LICENSE of its own yet; ship one when it does.
        { from: '../LICENSE', to: '.', noErrorOnMissing: true },
        { from: '../../LICENSE', to: '.', noErrorOnMissing: true },
        ...logoPaths.map((p) => ({ from: p, to: p })),
      ],
    }),
  ],
  resolve: {
    extensions: ['.js', '.jsx', '.ts', '.tsx'],
    modules: [path.resolve(root, SOURCE_DIR), 'node_modules'],
    unsafeCache: true,
  },
  performance: { hints: false },
});
