/**
 * One entry point for every input the viewer accepts, so the mime renderer and the
 * file viewer cannot drift apart on which formats they understand.
 */

import { isChromeTrace, readChromeTrace } from './chrome';
import { ITraceModel, TraceFormatError, readLaneparTrace } from './model';

/** Parse a string (file contents) or an already-parsed JSON value into the model. */
export function readTrace(data: unknown): ITraceModel {
  let raw = data;
  if (typeof raw === 'string') {
    try {
      raw = JSON.parse(raw);
    } catch (err) {
      throw new TraceFormatError(`not valid JSON: ${(err as Error).message}`);
    }
  }
  return isChromeTrace(raw) ? readChromeTrace(raw) : readLaneparTrace(raw);
}
