/* A late start's contention, in C: lanepar.trace._late.late_start_py (start_waits, then
 * TaskProbe.prepend_contention), statement for statement.
 *
 * Why C: a batch's fan-out starts its tasks one after another on the loop, so nearly every task
 * of a wide batch starts late and asks, as its body ends, what held it back (other tools' steps,
 * the GIL, a core). In Python that was two calls and their helpers — a few µs of the loop's time
 * a task, taken in the burst of replies at the batch's end, where the loop is the bottleneck
 * (at 64 loopback fetches, about 1 % of the batch's wall). Only the look-up in the thread
 * watch's samples, which few windows need (the loop thread was off its CPU in the window),
 * stays Python (lanepar.trace.probe.loop_waits); tests hold this one to the Python one.
 *
 * Included by _stepc.c; it uses the step driver's int and slot helpers (to_ll, get_ll, set_ll,
 * cell_get, cell_set) and the probe's slot offsets that setup_settle found (o_started, o_segs),
 * where it ran.
 */

/* what lanepar.trace._late hands over once (setup_late) */
static PyObject *g_loop_waits, *g_clock_local;
static long long g_lookup_min, g_off_noise, g_kind_gil, g_kind_runq;

/* floor division of a * b by c (c > 0), as Python's a * b // c: the product may pass 2**63 */
static long long muldiv_floor(long long a, long long b, long long c) {
    __int128 p = (__int128)a * b, q = p / c;
    if ((p % c != 0) && ((p < 0) != (c < 0))) q -= 1;
    return (long long)q;
}

/* the probe's started_ns slot where setup_settle found it, else -1: cell_get / cell_set then
 * go through the attribute */
#define STARTED_OFF (o_started > 0 ? o_started : -1)

/* whether loop_waits(t0, t1, cpu0, cpu1) would look at the samples rather than return (0, 0)
 * on its own tests: 1 yes (or not knowable here: it decides), 0 no, -1 error */
static int needs_lookup(long long t0, long long t1, long long cpu0, long long cpu1) {
    PyObject *local = PyObject_GetAttr(g_clock_local, S_s); /* (this thread's _clock.s) */
    if (local == NULL) return -1;
    int need = 1; /* (a record that is not the C Clock: loop_waits reads it itself) */
    if (Py_IS_TYPE(local, &ClockType)) {
        PyObject *states = ((Clock *)local)->states, *contention = ((Clock *)local)->contention;
        if (!(cpu0 && cpu1) || states == Py_None || t1 - t0 < g_lookup_min)
            need = contention != Py_None && t1 - t0 >= g_lookup_min; /* loop_contention's */
        else
            need = (t1 - t0) - (cpu1 - cpu0) >= g_off_noise;
    }
    Py_DECREF(local);
    return need;
}

/* loop_waits' (gil, runq) pair */
static int lookup(long long t0, long long t1, long long cpu0, long long cpu1, long long *gil,
                  long long *runq) {
    PyObject *r = PyObject_CallFunction(g_loop_waits, "LLLL", t0, t1, cpu0, cpu1);
    if (r == NULL) return -1;
    int bad = !PyTuple_Check(r) || PyTuple_GET_SIZE(r) != 2;
    if (bad)
        PyErr_SetString(PyExc_TypeError, "loop_waits() must return a (gil, runq) pair");
    else
        bad = to_ll(PyTuple_GET_ITEM(r, 0), gil) < 0 || to_ll(PyTuple_GET_ITEM(r, 1), runq) < 0;
    Py_DECREF(r);
    return bad ? -1 : 0;
}

/* a new [kind, start, end] segment */
static PyObject *late_seg(long long kind, long long start, long long end) {
    return Py_BuildValue("[LLL]", kind, start, end);
}

/* TaskProbe.prepend_contention(gil, runq, lock), its values already >= 0 */
static int prepend(PyObject *probe, long long started, long long gil, long long runq,
                   long long lock) {
    if (!(gil || runq || lock) || !started) return 0;
    long long start = started - lock - gil - runq;
    PyObject *segs = o_segs > 0 ? *(PyObject **)((char *)probe + o_segs) : NULL;
    if (segs != NULL)
        Py_INCREF(segs);
    else if ((segs = PyObject_GetAttr(probe, S_segs)) == NULL)
        return -1;
    if (!PyList_Check(segs)) {
        PyErr_SetString(PyExc_TypeError, "TaskProbe.segs must be a list");
        Py_DECREF(segs);
        return -1;
    }
    int bad = 0;
    if (!runq) { /* (nearly always: one piece, or a longer first one) */
        PyObject *first = PyList_GET_SIZE(segs) ? PyList_GET_ITEM(segs, 0) : NULL;
        if (first != NULL && seg_at(first, 0) == g_kind_gil && seg_at(first, 1) == started) {
            PyObject *s = PyLong_FromLongLong(start); /* one wait: the body began on the GIL */
            bad = s == NULL || PyList_SetItem(first, 1, s) < 0;
        } else {
            PyObject *seg = late_seg(g_kind_gil, start, started);
            bad = seg == NULL || PyList_Insert(segs, 0, seg) < 0;
            Py_XDECREF(seg);
        }
    } else {
        long long mid = start + lock + gil;
        Py_ssize_t at = 0;
        if (mid > start) {
            PyObject *seg = late_seg(g_kind_gil, start, mid);
            bad = seg == NULL || PyList_Insert(segs, at++, seg) < 0;
            Py_XDECREF(seg);
        }
        if (!bad && started > mid) {
            PyObject *seg = late_seg(g_kind_runq, mid, started);
            bad = seg == NULL || PyList_Insert(segs, at, seg) < 0;
            Py_XDECREF(seg);
        }
    }
    Py_DECREF(segs);
    if (bad) return -1;
    long long g0, l0, r0;
    if (get_ll(probe, S_gil_ns, &g0) < 0 || set_ll(probe, S_gil_ns, g0 + lock + gil) < 0 ||
        get_ll(probe, S_lock_ns, &l0) < 0 || set_ll(probe, S_lock_ns, l0 + lock) < 0 ||
        get_ll(probe, S_runq_ns, &r0) < 0 || set_ll(probe, S_runq_ns, r0 + runq) < 0)
        return -1;
    return cell_set(probe, STARTED_OFF, S_started_ns, start);
}

/* late_start(probe, t0, cpu0, cpu1, held0, mark) */
static PyObject *m_late_start(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t n) {
    if (n != 6 || g_loop_waits == NULL) {
        PyErr_SetString(PyExc_TypeError, n != 6 ? "late_start() takes 6 arguments"
                                                : "late_start() before setup_late()");
        return NULL;
    }
    PyObject *probe = args[0], *mark = args[5];
    long long t0, t1, cpu0, cpu1, held0, held1, end;
    if (to_ll(args[1], &t0) < 0 || to_ll(args[2], &cpu0) < 0 || to_ll(args[3], &cpu1) < 0 ||
        to_ll(args[4], &held0) < 0)
        return NULL;
    if (!PyTuple_Check(mark) || PyTuple_GET_SIZE(mark) != 2) {
        PyErr_SetString(PyExc_TypeError, "late_start: mark must be a (held, end) pair");
        return NULL;
    }
    if (to_ll(PyTuple_GET_ITEM(mark, 0), &held1) < 0 ||
        to_ll(PyTuple_GET_ITEM(mark, 1), &end) < 0 ||
        cell_get(probe, STARTED_OFF, S_started_ns, &t1) < 0)
        return NULL;
    /* start_waits: other tools' steps held the loop for ``lock``; of the rest, the samples */
    long long lock = 0, gil = 0, runq = 0;
    if (held0 >= 0) {
        long long by_steps = held1 - held0, until = (end < t1 ? end : t1) - t0;
        lock = by_steps < until ? by_steps : until;
    }
    if (lock < 0) lock = 0;
    long long room = t1 - t0 - lock;
    if (room >= g_lookup_min) {
        int need = needs_lookup(t0, t1, cpu0, cpu1);
        if (need < 0 || (need && lookup(t0, t1, cpu0, cpu1, &gil, &runq) < 0)) return NULL;
        long long both = gil + runq;
        if (both > room) {
            if (room > 0) {
                gil = muldiv_floor(gil, room, both);
                runq = muldiv_floor(runq, room, both);
            } else {
                gil = runq = 0;
            }
        }
    }
    if (prepend(probe, t1, gil > 0 ? gil : 0, runq > 0 ? runq : 0, lock) < 0) return NULL;
    Py_RETURN_NONE;
}

/* late_begin(w, job, free, now): lanepar.trace._late.late_begin_py, what a late start reads as
 * its body begins: (cpu, free_cpu, held0, mark) — the loop's CPU clock now and at ``free``
 * (both 0 where what other tools' steps held of the window leaves too little to look up),
 * loop_held() at ``free`` (-1 unknown) and loop_mark() now. Worker.clocks_at (_handc.c's),
 * loop_mark and cpu_at in one call: in Python, four calls of the fan-out's every task. */
static PyObject *m_late_begin(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t n) {
    if (n != 4 || g_clock_local == NULL || o_w_free_at <= 0 || o_j_pushed <= 0 ||
        o_j_batch <= 0) {
        PyErr_SetString(PyExc_TypeError, n != 4 ? "late_begin() takes 4 arguments"
                                                : "late_begin() before setup_late() and setup_hand()");
        return NULL;
    }
    long long free_, now, at_cpu, held0;
    if (to_ll(args[2], &free_) < 0 || to_ll(args[3], &now) < 0 ||
        clocks_at(args[0], args[1], free_, &at_cpu, &held0) < 0)
        return NULL;
    PyObject *local = PyObject_GetAttr(g_clock_local, S_s); /* (this thread's _clock.s) */
    if (local == NULL) return NULL;
    if (!Py_IS_TYPE(local, &ClockType)) {
        Py_DECREF(local);
        PyErr_SetString(PyExc_TypeError, "late_begin: the loop clock is not the C Clock");
        return NULL;
    }
    Clock *c = (Clock *)local;
    long long held1 = c->held, end = c->held_end, cpu = 0, free_cpu = 0;
    if (held0 < 0 || (now - free_) - (held1 - held0) >= g_lookup_min) {
        if (now - c->w > g_fresh) { /* _loopclock.cpu_at: a reading too old is taken afresh */
            long long t;
            if (read_clock(NULL, CLOCK_THREAD_CPUTIME_ID, &t) < 0) {
                Py_DECREF(local);
                return NULL;
            }
            c->w = now;
            c->c = t;
        }
        cpu = c->c + (now - c->w);
        free_cpu = at_cpu;
    }
    Py_DECREF(local);
    return Py_BuildValue("LLL(LL)", cpu, free_cpu, held0, held1, end);
}

/* setup_late(loop_waits, clock_local, LOOKUP_MIN_NS, OFF_NOISE_NS, GIL, RUNQ) */
static PyObject *m_setup_late(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t n) {
    if (n != 6) {
        PyErr_SetString(PyExc_TypeError, "setup_late() takes 6 arguments");
        return NULL;
    }
    long long lookup_min, off_noise, kind_gil, kind_runq;
    if (to_ll(args[2], &lookup_min) < 0 || to_ll(args[3], &off_noise) < 0 ||
        to_ll(args[4], &kind_gil) < 0 || to_ll(args[5], &kind_runq) < 0)
        return NULL;
    Py_XSETREF(g_loop_waits, Py_NewRef(args[0]));
    Py_XSETREF(g_clock_local, Py_NewRef(args[1]));
    g_lookup_min = lookup_min;
    g_off_noise = off_noise;
    g_kind_gil = kind_gil;
    g_kind_runq = kind_runq;
    Py_RETURN_NONE;
}
