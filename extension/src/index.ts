/**
 * lanepar-jupyterlab: a mime renderer for `application/vnd.lanepar.trace+json`, and
 * through the same renderer a document viewer for `*.lanetrace.json` files.
 *
 * A mime extension (not an application plugin) because JupyterLab then builds the
 * file type, the document factory and the notebook output renderer from one
 * declaration, and the bundle depends on nothing but Lumino widgets.
 */

import type { IRenderMime } from '@jupyterlab/rendermime-interfaces';

import { MIME_TYPE } from './model';
import { TraceView } from './view';

export { MIME_TYPE } from './model';
export { readTrace } from './read';
export { readChromeTrace } from './chrome';
export { TraceView } from './view';

const FILE_TYPE = 'lanetrace';
const FACTORY = 'lanepar Trace Viewer';

/**
 * Ahead of HTML (JupyterLab ranks it 50; lower wins): a finished `%%lanepar` cell carries HTML
 * (an iframe with a script) next to the trace, and an untrusted notebook strips that script, so
 * the trace must be drawn by this safe, script-free-input renderer whatever the trust.
 */
const RANK = 40;

export const rendererFactory: IRenderMime.IRendererFactory = {
  safe: true,
  mimeTypes: [MIME_TYPE],
  defaultRank: RANK,
  createRenderer: options => new TraceView(options)
};

const extension: IRenderMime.IExtension = {
  id: 'lanepar-jupyterlab:trace',
  description: 'Kernel-free timeline of lanepar traces (notebook outputs and *.lanetrace.json files).',
  rendererFactory,
  rank: RANK,
  dataType: 'json',
  fileTypes: [
    {
      name: FILE_TYPE,
      displayName: 'lanepar trace',
      mimeTypes: [MIME_TYPE],
      extensions: ['.lanetrace.json'],
      pattern: '^.*\\.lanetrace\\.json$',
      fileFormat: 'text',
      iconClass: 'jp-MaterialIcon jp-JSONIcon'
    }
  ],
  documentWidgetFactoryOptions: {
    name: FACTORY,
    label: 'lanepar Trace',
    primaryFileType: FILE_TYPE,
    fileTypes: [FILE_TYPE],
    defaultFor: [FILE_TYPE]
  }
};

export default extension;
