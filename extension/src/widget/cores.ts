/**
 * Per-core utilisation as a heat strip, with the average as a line under it. A sample covers
 * the interval that ends at its timestamp, so each cell spans from the previous sample.
 */

import { CORE_HEAT, withAlpha } from '../palette';
import { Store } from './store';
import { GUTTER, IWindow } from './timeline';

const AVG_H = 36;

export function coreRowHeight(nCores: number): number {
  return nCores ? Math.max(3, Math.min(10, Math.floor(64 / nCores))) : 0;
}

const SCALE_H = 14;

export function coresHeight(nCores: number): number {
  return nCores * coreRowHeight(nCores) + AVG_H + 6 + SCALE_H;
}

export function drawCores(ctx: CanvasRenderingContext2D, st: Store, win: IWindow): void {
  const nc = st.nCores;
  const ch = coreRowHeight(nc);
  const w = win.width;
  const h = coresHeight(nc);
  ctx.clearRect(0, 0, w, h);
  const k = (w - GUTTER) / Math.max(win.t1 - win.t0, 1e-9);
  const X = (t: number): number => GUTTER + (t - win.t0) * k;
  ctx.font = '10px sans-serif';
  ctx.textBaseline = 'middle';
  ctx.fillStyle = '#333';
  ctx.fillText('cores', 4, Math.min(10, (nc * ch) / 2 + 4));
  if (ch >= 8) {
    ctx.textAlign = 'right';
    ctx.fillStyle = '#666';
    for (let c = 0; c < nc; c++) {
      ctx.fillText(`cpu${c}`, GUTTER - 4, c * ch + ch / 2);
    }
    ctx.textAlign = 'left';
    ctx.fillStyle = '#333';
  }
  const n = st.sampleT.n;
  const T = st.sampleT.a;
  const C = st.sampleCores.a;
  for (let i = 0; i < n; i++) {
    const prev = i ? T[i - 1] : n > 1 ? 2 * T[0] - T[1] : T[0] - 50e6;
    const x0 = Math.max(X(prev), GUTTER);
    const x1 = Math.min(X(T[i]), w);
    if (x1 <= x0) {
      continue;
    }
    for (let c = 0; c < nc; c++) {
      const u = Math.min(1, Math.max(0, C[i * nc + c]));
      ctx.fillStyle = withAlpha(CORE_HEAT, 0.08 + 0.92 * u);
      ctx.fillRect(x0, c * ch, Math.max(x1 - x0, 1), ch - (ch > 4 ? 1 : 0));
    }
  }
  const y0 = nc * ch + 4;
  const y1 = y0 + AVG_H;
  ctx.fillStyle = '#f4f4f4';
  ctx.fillRect(GUTTER, y0, w - GUTTER, AVG_H);
  ctx.fillStyle = '#333';
  ctx.fillText('all cores', 4, y0 + AVG_H / 2);
  ctx.textAlign = 'right';
  ctx.fillText('100%', GUTTER - 4, y0 + 5);
  ctx.fillText('0%', GUTTER - 4, y1 - 4);
  ctx.textAlign = 'left';
  // the heat scale: what a pale and a full cell mean
  const sy = y1 + 4;
  ctx.fillStyle = '#555';
  ctx.fillText('scale', GUTTER, sy + 5);
  for (let i = 0; i <= 10; i++) {
    ctx.fillStyle = withAlpha(CORE_HEAT, 0.08 + 0.092 * i);
    ctx.fillRect(GUTTER + 32 + i * 10, sy, 10, 9);
  }
  ctx.fillStyle = '#555';
  ctx.fillText('0% → 100% of one core (sampled)', GUTTER + 32 + 116, sy + 5);
  ctx.canvas.dataset.scale = '0-100%';
  ctx.save();
  ctx.beginPath();
  ctx.rect(GUTTER, 0, w - GUTTER, h);
  ctx.clip();
  ctx.beginPath();
  for (let i = 0; i < n; i++) {
    let sum = 0;
    for (let c = 0; c < nc; c++) {
      sum += C[i * nc + c];
    }
    const x = X(T[i]);
    const y = y1 - (nc ? sum / nc : 0) * (AVG_H - 2) - 1;
    if (i === 0) {
      ctx.moveTo(x, y);
    } else {
      ctx.lineTo(x, y);
    }
  }
  ctx.strokeStyle = CORE_HEAT;
  ctx.lineWidth = 1.5;
  ctx.stroke();
  ctx.restore();
}
