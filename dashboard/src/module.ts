import { DataSourcePlugin } from '@grafana/data';

import { ConfigEditor } from './components/ConfigEditor';
import { QueryEditor } from './components/QueryEditor';
import { DataSource } from './datasource';
import { OP25BOptions, OP25BQuery, OP25BSecureOptions } from './types';

export const plugin = new DataSourcePlugin<DataSource, OP25BQuery, OP25BOptions, OP25BSecureOptions>(DataSource)
  .setConfigEditor(ConfigEditor)
  .setQueryEditor(QueryEditor);
