/**
 * Growable typed arrays: the widget keeps a run as columns, not as one object per task,
 * because a 50 000-task run repainted on every wheel tick must not chase pointers.
 */

type Typed = Float64Array | Float32Array | Uint32Array | Int32Array | Uint16Array | Uint8Array;
type Ctor<T extends Typed> = new (n: number) => T;

export class Column<T extends Typed> {
  constructor(Type: Ctor<T>, cap = 1024) {
    this._Type = Type;
    this.a = new Type(cap);
  }

  /** The storage; only `a[0 .. n)` is meaningful. Re-read after `push`/`reserve`. */
  a: T;
  n = 0;

  reserve(extra: number): void {
    if (this.n + extra <= this.a.length) {
      return;
    }
    let cap = Math.max(this.a.length * 2, 16);
    while (cap < this.n + extra) {
      cap *= 2;
    }
    const b = new this._Type(cap);
    b.set(this.a.subarray(0, this.n));
    this.a = b;
  }

  /** Give the memory back (the run is no longer shown anywhere). */
  clear(): void {
    this.a = new this._Type(0);
    this.n = 0;
  }

  push(v: number): void {
    if (this.n === this.a.length) {
      this.reserve(1);
    }
    this.a[this.n++] = v;
  }

  private _Type: Ctor<T>;
}
