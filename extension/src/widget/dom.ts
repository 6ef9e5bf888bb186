/** Small DOM helpers for the widget: text goes in as text, never as HTML (args are user data). */

export function div(cls: string, parent?: HTMLElement, text?: string): HTMLDivElement {
  const d = document.createElement('div');
  d.className = cls;
  if (text !== undefined) {
    d.textContent = text;
  }
  parent?.appendChild(d);
  return d;
}

export function span(cls: string, text: string): HTMLSpanElement {
  const s = document.createElement('span');
  s.className = cls;
  s.textContent = text;
  return s;
}

/** A canvas sized to its parent's width (at least 200 px) and `h` CSS px, at device resolution. */
export function sizeCanvas(canvas: HTMLCanvasElement, h: number): [CanvasRenderingContext2D, number] {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(200, canvas.parentElement?.clientWidth || 800);
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    canvas.style.width = `${w}px`;
    canvas.style.height = `${h}px`;
  }
  const ctx = canvas.getContext('2d')!;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return [ctx, w];
}
