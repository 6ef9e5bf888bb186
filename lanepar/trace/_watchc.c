/* The thread watch's per-body arithmetic in C: a thread-lane body's off-CPU split
 * (ThreadWatch._split: samples, _stateruns._runs with edges_ran, split_of, drawn) and its own
 * run-queue counter (_ownsched.OwnSched.runq), both read on the body's thread as it ends.
 *
 * Why: in Python they took 45-60 µs of every traced sync body that waited (this 2-core VM, a
 * body right after a 1 ms sleep: two schedstat reads through ctypes at ~14 µs, the sample scan,
 * the runs and the split ~22 µs), all of it holding the GIL the event loop needs to learn the
 * body ended — on a narrow lane each queued job waited that long again for its turn.
 *
 * The Python functions stay the reference (and the path where this module is not built);
 * tests/test_watch_c.py checks both give the same Split on generated sample rings. Included by
 * _stepc.c. */

#include <unistd.h>

/* set by setup_watch(): the kind codes (model.KIND_CODE, _stateruns.LOCK), the kind of each
 * sample class (_stateruns._KIND_OF_CLASS), and the ring layout (_statewatch) */
static long long k_cpu, k_wait, k_gil, k_runq, k_lock;
static long long g_class_kind[8];
static int g_n_classes = 0, g_class_bits = 3;
static long long g_slots_off, g_slot_words, g_s_widx;
static PyObject *g_split_type = NULL;

typedef struct {
    long long t, cls, rq;
} Sample;

typedef struct {
    long long kind, s, e;
} Run;

static long long floordiv(long long a, long long b) { /* Python's // for b > 0 */
    long long q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

static long long floordiv128(__int128 a, __int128 b) {
    __int128 q = a / b;
    if (a % b != 0 && ((a < 0) != (b < 0))) q -= 1;
    return (long long)q;
}

/* kind_of(sample, prev): -2 for a class with no kind (the Python path raises KeyError) */
static long long kind_of(const Sample *smp, Py_ssize_t i) {
    if (smp[i].cls < 0 || smp[i].cls >= g_n_classes) return -2;
    long long kind = g_class_kind[smp[i].cls];
    if (kind == k_cpu && i > 0 && 2 * (smp[i].rq - smp[i - 1].rq) > smp[i].t - smp[i - 1].t)
        return k_runq;
    return kind;
}

static int runs_add(Run *out, Py_ssize_t *n, long long kind, long long s, long long e) {
    if (*n && out[*n - 1].kind == kind) {
        out[*n - 1].e = e;
    } else {
        out[*n].kind = kind;
        out[*n].s = s;
        out[*n].e = e;
        (*n)++;
    }
    return 0;
}

/* _runs(smp, t0, t1, period, edges_ran=True) into out (room for n + 2); its count, or -1 for
 * a sample of no known class */
static Py_ssize_t edged_runs(const Sample *smp, Py_ssize_t n, long long t0, long long t1,
                             long long period, Run *out) {
    if (n == 0 || smp[n - 1].t < t0 - 2 * period || t1 <= t0) return 0;
    Py_ssize_t lo = -1, hi = -1;
    for (Py_ssize_t i = 0; i < n; i++)
        if (t0 < smp[i].t && smp[i].t < t1) {
            if (lo < 0) lo = i;
            hi = i;
        }
    if (lo < 0) return 0;
    /* pts: (t0, CPU), the inner samples, (t1, CPU) */
    Py_ssize_t np = hi - lo + 3, m = 0;
    long long start = t0;
    for (Py_ssize_t j = 0; j < np; j++) {
        long long t, kind, end;
        if (j == 0) {
            t = t0;
            kind = k_cpu;
        } else if (j == np - 1) {
            t = t1;
            kind = k_cpu;
        } else {
            t = smp[lo + j - 1].t;
            if ((kind = kind_of(smp, lo + j - 1)) == -2) return -1;
        }
        if (j + 1 < np) {
            long long tn = j + 1 == np - 1 ? t1 : smp[lo + j].t;
            end = floordiv(t + tn, 2);
        } else {
            end = t1;
        }
        if (end <= start) continue;
        runs_add(out, &m, kind, start, end);
        start = end;
    }
    return m;
}

/* split_of(runs, wall, cpu, runq) and drawn(runs), as the Split namedtuple */
static PyObject *split_of(const Run *runs, Py_ssize_t n, long long wall, long long cpu,
                          long long runq) {
    long long off = wall - cpu - runq;
    /* seen / near, indexed 0 GIL, 1 LOCK, 2 WAIT */
    long long seen[3] = {0, 0, 0}, near[3] = {0, 0, 0}, ran = 0;
#define SEEN_IX(k) ((k) == k_gil ? 0 : (k) == k_lock ? 1 : (k) == k_wait ? 2 : -1)
    for (Py_ssize_t i = 0; i < n; i++) {
        long long d = runs[i].e - runs[i].s;
        int ix = SEEN_IX(runs[i].kind);
        if (ix >= 0) {
            seen[ix] += d;
            continue;
        }
        ran += d;
        int beside[2], nb = 0;
        if (i - 1 >= 0 && (beside[nb] = SEEN_IX(runs[i - 1].kind)) >= 0) nb++;
        if (i + 1 < n && (beside[nb] = SEEN_IX(runs[i + 1].kind)) >= 0) nb++;
        for (int b = 0; b < nb; b++) near[beside[b]] += floordiv(d, nb);
    }
#undef SEEN_IX
    long long extra = ran - cpu - runq, by = near[0] + near[1] + near[2];
    if (extra > 0 && by)
        for (int k = 0; k < 3; k++) seen[k] += floordiv128((__int128)extra * near[k], by);
    long long futex = seen[0] + seen[1], gil = 0, lock = 0;
    if (futex + seen[2]) gil = floordiv128((__int128)off * futex, futex + seen[2]);
    if (futex) lock = floordiv128((__int128)gil * seen[1], futex);
    /* drawn(runs): a lock wait is a gil piece, neighbours of one kind merged */
    PyObject *drawn = PyList_New(0), *item;
    if (drawn == NULL) return NULL;
    long long pk = 0, ps = 0, pe = 0;
    int have = 0;
    for (Py_ssize_t i = 0; i <= n; i++) {
        long long kind = i < n ? (runs[i].kind == k_lock ? k_gil : runs[i].kind) : 0;
        if (i < n && have && pk == kind && pe == runs[i].s) {
            pe = runs[i].e;
            continue;
        }
        if (have) {
            if ((item = Py_BuildValue("(LLL)", pk, ps, pe)) == NULL ||
                PyList_Append(drawn, item) < 0) {
                Py_XDECREF(item);
                Py_DECREF(drawn);
                return NULL;
            }
            Py_DECREF(item);
        }
        if (i < n) {
            pk = kind;
            ps = runs[i].s;
            pe = runs[i].e;
            have = 1;
        }
    }
    PyObject *r = PyObject_CallFunction(g_split_type, "LLLLOL", cpu, gil, runq, off - gil, drawn,
                                        lock);
    Py_DECREF(drawn);
    return r;
}

/* watch_split(q, slot, ring, t0, t1, cpu, runq, period): ThreadWatch._split (runq None: sampled)
 * over the shared ring q (a buffer of int64); None where a sample's class is unknown (the
 * Python path then raises as it always did) */
static PyObject *m_watch_split(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t n) {
    if (n != 8 || g_split_type == NULL) {
        PyErr_SetString(PyExc_TypeError, n != 8 ? "watch_split() takes 8 arguments"
                                                : "watch_split() before setup_watch()");
        return NULL;
    }
    long long slot, ring, t0, t1, cpu, runq = 0, period;
    int sampled = args[6] == Py_None;
    if (to_ll(args[1], &slot) < 0 || to_ll(args[2], &ring) < 0 || to_ll(args[3], &t0) < 0 ||
        to_ll(args[4], &t1) < 0 || to_ll(args[5], &cpu) < 0 ||
        (!sampled && to_ll(args[6], &runq) < 0) || to_ll(args[7], &period) < 0)
        return NULL;
    if (ring < 1 || slot < 0) {
        PyErr_SetString(PyExc_ValueError, "watch_split(): bad slot or ring");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    const long long *q = (const long long *)view.buf;
    Py_ssize_t words = view.len / 8;
    long long b = (g_slots_off + slot * (g_slot_words + 2 * ring) * 8) / 8;
    PyObject *result = NULL;
    Sample *smp = NULL;
    Run *runs = NULL;
    if (b + g_slot_words + 2 * ring > words) {
        PyErr_SetString(PyExc_ValueError, "watch_split(): slot past the ring's end");
        goto done;
    }
    /* samples(): from the last at or before t0 through t1, oldest first */
    long long w = q[b + g_s_widx], lo = w - ring + 4 > 0 ? w - ring + 4 : 0;
    long long base = b + g_slot_words;
    Py_ssize_t ns = 0, cap = w - lo > 0 ? (Py_ssize_t)(w - lo) : 0;
    if ((smp = PyMem_Malloc((cap + 1) * sizeof(Sample))) == NULL ||
        (runs = PyMem_Malloc((cap + 3) * sizeof(Run))) == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (long long i = w - 1; i >= lo; i--) {
        long long k = base + 2 * (i % ring), v = q[k], t = v >> g_class_bits;
        if (t <= t1) {
            smp[ns].t = t;
            smp[ns].cls = v & ((1LL << g_class_bits) - 1);
            smp[ns].rq = q[k + 1];
            ns++;
            if (t <= t0) break;
        }
    }
    for (Py_ssize_t i = 0, j = ns - 1; i < j; i++, j--) {
        Sample s = smp[i];
        smp[i] = smp[j];
        smp[j] = s;
    }
    /* _split() */
    long long wall = t1 - t0 > 0 ? t1 - t0 : 0;
    cpu = cpu < 0 ? 0 : cpu > wall ? wall : cpu;
    if (sampled) runq = ns > 1 ? smp[ns - 1].rq - smp[0].rq : 0;
    runq = runq < 0 ? 0 : runq > wall - cpu ? wall - cpu : runq;
    Py_ssize_t nr = edged_runs(smp, ns, t0, t1, period, runs);
    result = nr < 0 ? Py_NewRef(Py_None) : split_of(runs, nr, wall, cpu, runq);
done:
    PyMem_Free(smp);
    PyMem_Free(runs);
    PyBuffer_Release(&view);
    return result;
}

/* read_runq(fd): the second field of a schedstat file read from offset 0 (the time runnable
 * but waiting for a core), 0 when the read failed or found nothing; the GIL is kept, as
 * _procread's libc call keeps it (os.pread gives it up, and may wait 5 ms to get it back) */
static PyObject *m_read_runq(PyObject *Py_UNUSED(m), PyObject *arg) {
    long long fd;
    if (to_ll(arg, &fd) < 0) return NULL;
    char buf[97];
    ssize_t got = pread((int)fd, buf, 96, 0);
    if (got <= 0) return PyLong_FromLong(0);
    buf[got] = '\0';
    char *p = buf, *end;
    while (*p == ' ' || *p == '\t' || *p == '\n') p++;
    while (*p && *p != ' ' && *p != '\t' && *p != '\n') p++; /* the first field */
    errno = 0;
    long long v = strtoll(p, &end, 10);
    if (end == p || errno != 0 || (*end && *end != ' ' && *end != '\t' && *end != '\n')) {
        PyErr_SetString(PyExc_ValueError, "schedstat: no run-queue field");
        return NULL;
    }
    return PyLong_FromLongLong(v);
}

/* setup_watch(Split, cpu, wait, gil, runq, lock, class_kinds, class_bits, slots_off,
 * slot_words, s_widx) */
static PyObject *m_setup_watch(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t n) {
    if (n != 11 || !PyTuple_Check(args[6]) || PyTuple_GET_SIZE(args[6]) > 8) {
        PyErr_SetString(PyExc_TypeError, "setup_watch() takes 11 arguments, class kinds a tuple");
        return NULL;
    }
    long long bits;
    if (to_ll(args[1], &k_cpu) < 0 || to_ll(args[2], &k_wait) < 0 ||
        to_ll(args[3], &k_gil) < 0 || to_ll(args[4], &k_runq) < 0 ||
        to_ll(args[5], &k_lock) < 0 || to_ll(args[7], &bits) < 0 ||
        to_ll(args[8], &g_slots_off) < 0 || to_ll(args[9], &g_slot_words) < 0 ||
        to_ll(args[10], &g_s_widx) < 0)
        return NULL;
    Py_ssize_t nc = PyTuple_GET_SIZE(args[6]);
    for (Py_ssize_t i = 0; i < nc; i++)
        if (to_ll(PyTuple_GET_ITEM(args[6], i), &g_class_kind[i]) < 0) return NULL;
    g_n_classes = (int)nc;
    g_class_bits = (int)bits;
    Py_XSETREF(g_split_type, Py_NewRef(args[0]));
    Py_RETURN_NONE;
}
