/* The step driver of traced async bodies, in C: the loop of lanepar.trace.probe._resumed.
 *
 * Why C: a traced task's every suspension passes through this loop, and in Python its ~70
 * bytecodes cost about 1 us a step, more than the step of a task that does little per await.
 * This is the same state machine, statement for statement (the Python version stays, as the
 * fallback where this does not build and as the reference the tests hold this one to): the
 * short steps and waits that nearly every suspension is are handled here, and so are a wait
 * past the resolution on a plain probe (a tool waiting on real I/O, at every suspension:
 * hand_wait, segments.hand_and_wait in C) and a long step on one (a tool doing real work
 * between awaits: long_step, probe._step and TaskProbe.step in C); every rarer branch (a step
 * the thread watch splits or the loop watch reports, a probe with notes, the end of a body
 * that drew segments) calls the same Python helpers the Python driver calls, and the tests
 * hold the two drivers' records equal on a fake clock.
 *
 * The clocks are the ones the Python driver reads, time.perf_counter_ns (CLOCK_MONOTONIC on
 * Linux) and time.thread_time_ns (CLOCK_THREAD_CPUTIME_ID), read here directly unless the
 * caller passes other callables (the tests' fake clock), which are then called instead.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <errno.h>
#include <pthread.h>
#include <time.h>

#if !defined(__linux__)
#error "lanepar's C step driver reads Linux clocks; elsewhere the Python driver is used"
#endif

/* what probe.py hands over once (setup): the helpers for the rare branches, and constants */
static PyObject *g_globals; /* lanepar.trace.probe's namespace: its _pc, _tt, _clock */
static PyObject *g_step, *g_hand_and_wait, *g_cpu, *g_wait, *g_real_pc, *g_real_tt;
static long long g_fresh = 50000;
/* probe._long_step, and probe.LONG_STEP_OFF_NS: a long step whose off-CPU time is worth
 * splitting with the thread watch, or that may have held the loop past the loop watch's
 * threshold, goes to the Python function with the thread clock read here */
static PyObject *g_long_step;
static long long g_long_off = 2000000;

static PyObject *S_held, *S_held_end, *S_w, *S_c, *S_t0, *S_parked, *S_begin, *S_p_start,
    *S_p_cpu, *S_p_wait, *S_p_end, *S_cpu_ns, *S_wait_ns, *S_segs, *S_finished_ns, *S_flush,
    *S_throw, *S_value, *S_max_segments, *S_coarsen, *S_started_ns, *S_resolution, *S_s,
    *S__pc, *S__tt, *S__clock, *S_blocks, *S_threshold_ns, *S_close_pending;

enum { FRESH, SUSPENDED, RUNNING, FINISHED };

/* The per-loop-thread record (lanepar.trace._loopclock._Clock) as a C struct, where this module
 * is built: the driver reads and writes four of its numbers at every step, which as Python
 * ints cost an allocation each. Python code sees the same attributes. */
typedef struct {
    PyObject_HEAD
    long long w, c, held, held_end, slot;
    PyObject *blocks, *states, *contention;
} Clock;

static PyTypeObject ClockType;

/* The loop watch's per-step fields (lanepar.trace.loopwatch.LoopWatch's base, where this module
 * is built): the start of the step running now (0 between steps), which the driver writes
 * twice a step and the watchdog thread reads, and whether the watchdog is parked. */
typedef struct {
    PyObject_HEAD
    long long t0;
    char parked;
    /* the watchdog's own: the step it last reported, and a stop request with the condition
     * variable its timed waits sleep on (see mark_watch) */
    long long reported;
    int stop, ready;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} StepMark;

static PyTypeObject StepMarkType;


typedef struct {
    PyObject_HEAD
    PyObject *coro, *probe, *clock, *blocks, *yielded, *pc, *tt; /* pc / tt: NULL = real */
    Clock *cc;    /* clock, when it is a C Clock (its fields read directly; else attributes) */
    StepMark *bm; /* blocks, when it is a StepMark (likewise) */
    /* the __slots__ cells of the probe's fields (a TaskProbe's; an offset of -1: attribute
     * access instead), read and written directly */
    Py_ssize_t off_p_start, off_p_end, off_p_cpu, off_p_wait, off_cpu_ns, off_wait_ns,
        off_finished_ns, off_segs, off_max_segments, off_started_ns, off_resolution;
    long long t0, t1, c0, res, shrt;
    long long ps, pc_, pw, ac, aw; /* the pending run, as in _resumed */
    int state;
} Resumed;

static PyTypeObject ResumedType;

/* an int's value (PyLong_AsLongLong takes a slow path for any int over 2**30 on 3.11) */
static int to_ll(PyObject *v, long long *out) {
    int overflow;
    *out = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow) {
        PyErr_SetString(PyExc_OverflowError, "a clock value out of range");
        return -1;
    }
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

/* -- clocks and attribute access ------------------------------------------------------------ */
static int read_clock(PyObject *fn, clockid_t id, long long *out) {
    if (fn == NULL) {
        struct timespec ts;
        clock_gettime(id, &ts);
        *out = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
        return 0;
    }
    PyObject *r = PyObject_CallNoArgs(fn);
    if (r == NULL) return -1;
    int bad = to_ll(r, out);
    Py_DECREF(r);
    return bad;
}
#define NOW(s, out) read_clock((s)->pc, CLOCK_MONOTONIC, (out))
#define THREAD_CPU(s, out) read_clock((s)->tt, CLOCK_THREAD_CPUTIME_ID, (out))

/* _loopclock.cpu_at on the calling loop thread's C Clock: its CPU clock at ``now``, the last
 * reading taken forward when under FRESH_NS old, else read afresh and kept for the next (a
 * fan-out's hand-offs and late starts, each right after the steps before it, share one read) */
static long long clock_cpu_at(Clock *c, long long now) {
    if (now - c->w > g_fresh) {
        read_clock(NULL, CLOCK_THREAD_CPUTIME_ID, &c->c);
        c->w = now;
    }
    return c->c + (now - c->w);
}

/* a new reference's int value, the reference dropped (NULL: the error already set) */
static int own_ll(PyObject *v, long long *out) {
    if (v == NULL) return -1;
    int bad = to_ll(v, out);
    Py_DECREF(v);
    return bad;
}

static int get_ll(PyObject *o, PyObject *name, long long *out) {
    return own_ll(PyObject_GetAttr(o, name), out);
}

static int set_ll(PyObject *o, PyObject *name, long long value) {
    PyObject *v = PyLong_FromLongLong(value);
    if (v == NULL) return -1;
    int r = PyObject_SetAttr(o, name, v);
    Py_DECREF(v);
    return r;
}

/* an int in a __slots__ cell at ``off`` (attribute ``name`` when off < 0) */
static int cell_get(PyObject *o, Py_ssize_t off, PyObject *name, long long *out) {
    if (off < 0) return get_ll(o, name, out);
    PyObject *v = *(PyObject **)((char *)o + off);
    if (v == NULL) return get_ll(o, name, out); /* (deleted: the AttributeError) */
    return to_ll(v, out);
}

static int cell_set(PyObject *o, Py_ssize_t off, PyObject *name, long long value) {
    if (off < 0) return set_ll(o, name, value);
    PyObject *n = PyLong_FromLongLong(value);
    if (n == NULL) return -1;
    PyObject **cell = (PyObject **)((char *)o + off);
    Py_XSETREF(*cell, n);
    return 0;
}

#define CLOCK_GET(s, field, name, out)                                                       \
    ((s)->cc ? (*(out) = (s)->cc->field, 0) : get_ll((s)->clock, (name), (out)))
#define CLOCK_SET(s, field, name, v)                                                        \
    ((s)->cc ? ((s)->cc->field = (v), 0) : set_ll((s)->clock, (name), (v)))
/* (an atomic store: the watchdog reads it without the GIL, see mark_watch) */
#define blocks_set_t0(s, v)                                                                 \
    ((s)->bm ? (__atomic_store_n(&(s)->bm->t0, (v), __ATOMIC_RELAXED), 0)                   \
             : set_ll((s)->blocks, S_t0, (v)))
#define PROBE_GET(s, field, out) cell_get((s)->probe, (s)->off_##field, S_##field, (out))
#define PROBE_SET(s, field, v) cell_set((s)->probe, (s)->off_##field, S_##field, (v))

static int probe_add(Resumed *s, Py_ssize_t off, PyObject *name, long long d) {
    long long v;
    if (d == 0) return 0;
    if (cell_get(s->probe, off, name, &v) < 0) return -1;
    return cell_set(s->probe, off, name, v + d);
}

/* blocks.parked (1, 0, -1 on error) */
static int blocks_parked(Resumed *s) {
    if (s->bm) return s->bm->parked != 0;
    PyObject *v = PyObject_GetAttr(s->blocks, S_parked);
    if (v == NULL) return -1;
    int r = PyObject_IsTrue(v);
    Py_DECREF(v);
    return r;
}

/* the offset of an object's __slots__ cell ``name`` (-1: none, use attribute access) */
static Py_ssize_t slot_offset(PyObject *o, PyObject *name) {
    PyObject *d = _PyType_Lookup(Py_TYPE(o), name); /* borrowed */
    if (d == NULL || !Py_IS_TYPE(d, &PyMemberDescr_Type)) return -1;
    PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
    if (m->type != T_OBJECT_EX || (m->flags & READONLY)) return -1;
    if (*(PyObject **)((char *)o + m->offset) == NULL) return -1;
    return m->offset;
}

/* -- the pieces of _resumed ------------------------------------------------------------------ */
static PyObject *call_ll(PyObject *fn, PyObject *a, PyObject *b, int n, const long long *v) {
    /* fn(a, [b,] v[0], ..., v[n-1]) */
    PyObject *args[10];
    int k = 0, i;
    args[k++] = a;
    if (b != NULL) args[k++] = b;
    for (i = 0; i < n; i++) {
        args[k + i] = PyLong_FromLongLong(v[i]);
        if (args[k + i] == NULL) {
            while (--i >= 0) Py_DECREF(args[k + i]);
            return NULL;
        }
    }
    PyObject *r = PyObject_Vectorcall(fn, args, (size_t)(k + n), NULL);
    for (i = 0; i < n; i++) Py_DECREF(args[k + i]);
    return r;
}

static int drop(PyObject *r) {
    if (r == NULL) return -1;
    Py_DECREF(r);
    return 0;
}

/* _hand(probe, ps, pe, pc + ac, pw + aw, ac, aw): give the probe the pending run [ps, pe] and
 * the totals kept here */
static int hand(Resumed *s, long long pe) {
    long long pc = s->pc_ + s->ac, pw = s->pw + s->aw;
    int some = pe > s->ps || pc || pw;
    if (PROBE_SET(s, p_start, some ? s->ps : -1) < 0 || PROBE_SET(s, p_end, some ? pe : -1) < 0 ||
        PROBE_SET(s, p_cpu, some ? pc : 0) < 0 || PROBE_SET(s, p_wait, some ? pw : 0) < 0)
        return -1;
    if (probe_add(s, s->off_cpu_ns, S_cpu_ns, s->ac) < 0 ||
        probe_add(s, s->off_wait_ns, S_wait_ns, s->aw) < 0)
        return -1;
    return 0;
}

static int flush(Resumed *s) { return drop(PyObject_CallMethodNoArgs(s->probe, S_flush)); }

/* Nothing noted in the probe's __dict__ (no GIL / run-queue part in its pending run, none of
 * the rarer fields): the plain case, the only one the C paths below take. */
static int probe_plain(Resumed *s) {
    PyObject **dp = _PyObject_GetDictPtr(s->probe);
    return dp == NULL || *dp == NULL || PyDict_GET_SIZE(*dp) == 0;
}

/* Whether the probe holds segments already (1, 0, -1 on error). */
static int probe_has_segs(Resumed *s) {
    PyObject *segs = s->off_segs >= 0 ? *(PyObject **)((char *)s->probe + s->off_segs) : NULL;
    if (segs != NULL && PyList_CheckExact(segs)) return PyList_GET_SIZE(segs) != 0;
    segs = PyObject_GetAttr(s->probe, S_segs);
    if (segs == NULL) return -1;
    int r = PyObject_IsTrue(segs);
    Py_DECREF(segs);
    return r;
}

/* a [kind, start, end] of the probe's segs, or -1 where it is not one of ints */
static long long seg_at(PyObject *seg, Py_ssize_t i) {
    if (!PyList_CheckExact(seg) || PyList_GET_SIZE(seg) != 3) return -1;
    PyObject *v = PyList_GET_ITEM(seg, i);
    if (!PyLong_CheckExact(v)) return -1;
    int overflow;
    long long r = PyLong_AsLongLongAndOverflow(v, &overflow);
    return overflow ? -1 : r;
}

/* TaskProbe._emit(kind, start, end) for a probe whose segs is a list of [kind, start, end] */
static int emit(Resumed *s, PyObject *kind, long long start, long long end) {
    if (end <= start) return 0;
    PyObject *segs = *(PyObject **)((char *)s->probe + s->off_segs);
    Py_ssize_t n = PyList_GET_SIZE(segs);
    if (n) {
        PyObject *last = PyList_GET_ITEM(segs, n - 1);
        long long lk = seg_at(last, 0), le = seg_at(last, 2);
        if (lk < 0 || le < 0) { /* not a shape this knows: the Python method */
            PyObject *r = PyObject_CallMethod(s->probe, "_emit", "OLL", kind, start, end);
            return drop(r);
        }
        if (lk == PyLong_AsLongLong(kind) && le >= start) {
            PyObject *e = PyLong_FromLongLong(end);
            if (e == NULL) return -1;
            return PyList_SetItem(last, 2, e); /* (steals e) */
        }
        if (le < start) start = le; /* a gap (clock skew): the new piece takes it */
    }
    PyObject *seg = Py_BuildValue("[OLL]", kind, start, end);
    if (seg == NULL) return -1;
    int r = PyList_Append(segs, seg);
    Py_DECREF(seg);
    if (r < 0) return -1;
    long long most;
    if (cell_get(s->probe, s->off_max_segments, S_max_segments, &most) < 0) return -1;
    if (PyList_GET_SIZE(segs) >= most)
        return drop(PyObject_CallMethodNoArgs(s->probe, S_coarsen));
    return 0;
}

/* the probe's pending run closed (p_start = p_end = -1, p_cpu = p_wait = 0), as _flush leaves it */
static int clear_run(Resumed *s) {
    return (PROBE_SET(s, p_start, -1) < 0 || PROBE_SET(s, p_end, -1) < 0 ||
            PROBE_SET(s, p_cpu, 0) < 0 || PROBE_SET(s, p_wait, 0) < 0)
               ? -1
               : 0;
}

/* hand(s, pe) then TaskProbe._flush(): the pending run [ps, pe] drawn as the kind that
 * dominated it, the totals taken; done here for a plain probe (see probe_plain) */
static int hand_flush(Resumed *s, long long pe) {
    if (s->off_segs < 0 || s->off_max_segments < 0 || s->off_p_start < 0 || !probe_plain(s) ||
        !PyList_CheckExact(*(PyObject **)((char *)s->probe + s->off_segs)))
        return (hand(s, pe) < 0 || flush(s) < 0) ? -1 : 0;
    long long pc = s->pc_ + s->ac, pw = s->pw + s->aw;
    if (probe_add(s, s->off_cpu_ns, S_cpu_ns, s->ac) < 0 ||
        probe_add(s, s->off_wait_ns, S_wait_ns, s->aw) < 0)
        return -1;
    if ((pe > s->ps || pc || pw) && emit(s, pc >= pw ? g_cpu : g_wait, s->ps, pe) < 0)
        return -1;
    return clear_run(s);
}

/* lanepar.trace.segments.hand_and_wait(probe, ps, pe, pc, pw, ac, aw, t1): the pending run
 * [ps, pe] handed over, then a wait [pe, t1] of at least the resolution — done here for a
 * plain probe whose last segment is a [kind, start, end] of ints (a tool waiting on real I/O
 * comes here at every suspension), else by the Python function */
static int hand_wait(Resumed *s, long long ps, long long pe, long long pc, long long pw,
                     long long ac, long long aw, long long t1) {
    PyObject *segs = s->off_segs >= 0 ? *(PyObject **)((char *)s->probe + s->off_segs) : NULL;
    Py_ssize_t n = (segs != NULL && PyList_CheckExact(segs)) ? PyList_GET_SIZE(segs) : -1;
    long long last_end = 0;
    if (n > 0 && (last_end = seg_at(PyList_GET_ITEM(segs, n - 1), 2)) < 0) n = -1;
    if (n < 0 || s->off_max_segments < 0 || s->off_p_start < 0 || !probe_plain(s)) {
        long long v[7] = {ps, pe, pc, pw, ac, aw, t1};
        return drop(call_ll(g_hand_and_wait, s->probe, NULL, 7, v));
    }
    if (probe_add(s, s->off_cpu_ns, S_cpu_ns, ac) < 0 ||
        probe_add(s, s->off_wait_ns, S_wait_ns, aw + t1 - pe) < 0)
        return -1;
    if (pe > ps || pc || pw) { /* close the run: its left neighbour takes it, else it stands */
        if (n > 0 && last_end >= ps) {
            PyObject *end = PyLong_FromLongLong(pe);
            if (end == NULL) return -1;
            PyList_SetItem(PyList_GET_ITEM(segs, n - 1), 2, end); /* (steals end) */
        } else {
            if (emit(s, pc >= pw ? g_cpu : g_wait, ps, pe) < 0 || clear_run(s) < 0) return -1;
        }
    }
    return emit(s, g_wait, pe, t1);
}

static void zero_run(Resumed *s, long long start) {
    s->ps = start;
    s->pc_ = s->pw = s->ac = s->aw = 0;
}

/* fn(probe, clock, blocks or None, v[0], ..., v[n-1]): probe._step (t0, t1, c0) or
 * probe._long_step (t0, t1, c0, c1), in Python */
static int call_step(PyObject *fn, Resumed *s, const long long *v, int n) {
    PyObject *args[7];
    int i;
    args[0] = s->probe;
    args[1] = s->clock;
    args[2] = s->blocks ? s->blocks : Py_None;
    for (i = 0; i < n; i++) {
        args[3 + i] = PyLong_FromLongLong(v[i]);
        if (args[3 + i] == NULL) {
            while (--i >= 0) Py_DECREF(args[3 + i]);
            return -1;
        }
    }
    PyObject *r = PyObject_Vectorcall(fn, args, (size_t)(3 + n), NULL);
    for (i = 0; i < n; i++) Py_DECREF(args[3 + i]);
    return drop(r);
}

static int py_step(Resumed *s) {
    long long v[3] = {s->t0, s->t1, s->c0};
    return call_step(g_step, s, v, 3);
}

static int py_long_step(Resumed *s, long long c1) {
    long long v[4] = {s->t0, s->t1, s->c0, c1};
    return call_step(g_long_step, s, v, 4);
}

/* TaskProbe._flush for a plain probe: the pending run drawn as the kind that dominated it */
static int flush_plain(Resumed *s) {
    long long ps, pe, pc, pw;
    if (PROBE_GET(s, p_start, &ps) < 0) return -1;
    if (ps < 0) return 0;
    if (PROBE_GET(s, p_end, &pe) < 0 || PROBE_GET(s, p_cpu, &pc) < 0 ||
        PROBE_GET(s, p_wait, &pw) < 0)
        return -1;
    return (emit(s, pc >= pw ? g_cpu : g_wait, ps, pe) < 0) ? -1 : clear_run(s);
}

/* TaskProbe._close_pending for a plain probe whose pending run starts at ps (>= 0): its left
 * neighbour takes it, else it stands alone */
static int close_pending_plain(Resumed *s, long long ps) {
    PyObject *segs = *(PyObject **)((char *)s->probe + s->off_segs);
    if (!PyList_CheckExact(segs))
        return drop(PyObject_CallMethodNoArgs(s->probe, S_close_pending));
    Py_ssize_t n = PyList_GET_SIZE(segs);
    if (n > 0) {
        PyObject *last = PyList_GET_ITEM(segs, n - 1);
        long long le = seg_at(last, 2);
        if (le < 0) return drop(PyObject_CallMethodNoArgs(s->probe, S_close_pending));
        if (le >= ps) {
            long long pe;
            if (PROBE_GET(s, p_end, &pe) < 0) return -1;
            PyObject *end = PyLong_FromLongLong(pe);
            if (end == NULL) return -1;
            PyList_SetItem(last, 2, end); /* (steals end) */
            return clear_run(s);
        }
    }
    return flush_plain(s);
}

/* TaskProbe.step(t0, t1, cpu) for a plain probe: the CPU share drawn first, the rest as wait */
static int step_plain(Resumed *s, long long t0, long long t1, long long cpu) {
    long long wall = t1 - t0, ps, v;
    if (cpu > wall)
        cpu = wall;
    else if (cpu < 0)
        cpu = 0;
    if (probe_add(s, s->off_cpu_ns, S_cpu_ns, cpu) < 0 ||
        probe_add(s, s->off_wait_ns, S_wait_ns, wall - cpu) < 0 || PROBE_GET(s, p_start, &ps) < 0)
        return -1;
    if (wall >= s->res) { /* long enough to draw as it was */
        if (ps >= 0 && close_pending_plain(s, ps) < 0) return -1;
        return (emit(s, g_cpu, t0, t0 + cpu) < 0) ? -1 : emit(s, g_wait, t0 + cpu, t1);
    }
    if (ps < 0) {
        ps = t0;
        if (PROBE_SET(s, p_start, t0) < 0) return -1;
    }
    if (PROBE_SET(s, p_end, t1) < 0 || PROBE_GET(s, p_cpu, &v) < 0 ||
        PROBE_SET(s, p_cpu, v + cpu) < 0 || PROBE_GET(s, p_wait, &v) < 0 ||
        PROBE_SET(s, p_wait, v + wall - cpu) < 0)
        return -1;
    return (t1 - ps >= s->res) ? flush_plain(s) : 0;
}

/* _step(probe, clock, blocks, t0, t1, c0). A step of FRESH_NS or more on a plain probe (a tool
 * doing real work between awaits: a few such steps per socket call) is done here, as the
 * Python function does it, without its call and the probe method's: the thread clock read,
 * the step drawn, the loop's held time and the loop watch's mark. Where the thread watch has
 * a split to make (its off-CPU part over LONG_STEP_OFF_NS) or the step may have held the loop
 * past the loop watch's threshold, the Python function takes it with the clock read here;
 * any other shape goes to _step itself. */
static int long_step(Resumed *s) {
    long long t0 = s->t0, t1 = s->t1, wall = t1 - t0, c1;
    Clock *cc = s->cc;
    if (wall < g_fresh || g_long_step == NULL || cc == NULL || s->off_segs < 0 ||
        s->off_max_segments < 0 || s->off_p_start < 0 || s->off_p_end < 0 ||
        s->off_p_cpu < 0 || s->off_p_wait < 0 || !probe_plain(s) ||
        !PyList_CheckExact(*(PyObject **)((char *)s->probe + s->off_segs)))
        return py_step(s);
    if (THREAD_CPU(s, &c1) < 0) return -1;
    long long cpu = c1 - s->c0;
    if (cc->states != NULL && cc->states != Py_None && cc->slot >= 0 && wall - cpu >= g_long_off)
        return py_long_step(s, c1);
    if (s->blocks) {
        long long threshold;
        if (get_ll(s->blocks, S_threshold_ns, &threshold) < 0) return -1;
        if (wall >= threshold) return py_long_step(s, c1);
    }
    cc->w = t1;
    cc->c = c1;
    if (step_plain(s, t0, t1, cpu) < 0) return -1;
    cc->held += wall;
    cc->held_end = t1;
    return s->blocks ? blocks_set_t0(s, 0) : 0;
}

/* a short step: clock.held += d; clock.held_end = t1; blocks.t0 = 0 */
static int short_step(Resumed *s, long long d) {
    long long held;
    if (s->blocks && blocks_set_t0(s, 0) < 0) return -1;
    if (CLOCK_GET(s, held, S_held, &held) < 0 || CLOCK_SET(s, held, S_held, held + d) < 0 ||
        CLOCK_SET(s, held_end, S_held_end, s->t1) < 0)
        return -1;
    s->ac += d;
    return 0;
}

/* the step [t0, t1] that just yielded */
static int after_step(Resumed *s) {
    long long d = s->t1 - s->t0;
    if (d < s->shrt) {
        if (short_step(s, d) < 0) return -1;
        if (s->t1 - s->ps >= s->res) {
            if (hand_flush(s, s->t1) < 0) return -1;
            zero_run(s, s->t1);
        }
        return 0;
    }
    if (hand(s, s->t0) < 0 || long_step(s) < 0) return -1;
    if (PROBE_GET(s, p_start, &s->ps) < 0 || PROBE_GET(s, p_cpu, &s->pc_) < 0 ||
        PROBE_GET(s, p_wait, &s->pw) < 0)
        return -1;
    if (s->ps < 0) s->ps = s->t1;
    s->ac = s->aw = 0;
    return 0;
}

/* the body returned from the step that began at t0 */
static int on_return(Resumed *s) {
    if (NOW(s, &s->t1) < 0 || PROBE_SET(s, finished_ns, s->t1) < 0) return -1;
    long long d = s->t1 - s->t0;
    if (d >= s->shrt) return (hand(s, s->t0) < 0 || long_step(s) < 0) ? -1 : 0;
    if (short_step(s, d) < 0) return -1;
    int has_segs = probe_has_segs(s);
    if (has_segs < 0) return -1;
    int has_dict = !probe_plain(s);
    if (!has_segs && !has_dict) { /* the whole body one run, drawn as ``finish`` draws it */
        if (probe_add(s, s->off_cpu_ns, S_cpu_ns, s->ac) < 0 ||
            probe_add(s, s->off_wait_ns, S_wait_ns, s->aw) < 0)
            return -1;
        long long pc = s->pc_ + s->ac, pw = s->pw + s->aw;
        PyObject *list = PyList_New(0);
        if (list == NULL) return -1;
        if (s->t1 > s->ps) {
            PyObject *seg = Py_BuildValue("[OLL]", pc >= pw ? g_cpu : g_wait, s->ps, s->t1);
            if (seg == NULL || PyList_Append(list, seg) < 0) {
                Py_XDECREF(seg);
                Py_DECREF(list);
                return -1;
            }
            Py_DECREF(seg);
        }
        int r = PyObject_SetAttr(s->probe, S_segs, list);
        Py_DECREF(list);
        return (r < 0 || clear_run(s) < 0) ? -1 : 0;
    }
    if (hand(s, s->t1) < 0) return -1;
    return (s->t1 - s->ps >= s->res) ? flush(s) : 0;
}

/* Before a step that begins at s->t0: the thread clock at its start (read afresh only when the
 * last reading is older than FRESH_NS), and the loop watch told of it. */
static int begin_step(Resumed *s) {
    long long t0 = s->t0, cw;
    if (CLOCK_GET(s, w, S_w, &cw) < 0) return -1;
    if (t0 - cw > g_fresh) {
        if (THREAD_CPU(s, &s->c0) < 0 || CLOCK_SET(s, w, S_w, t0) < 0 ||
            CLOCK_SET(s, c, S_c, s->c0) < 0)
            return -1;
    } else if (CLOCK_GET(s, c, S_c, &s->c0) < 0) {
        return -1;
    }
    if (s->blocks) {
        if (blocks_set_t0(s, t0) < 0) return -1;
        int p = blocks_parked(s);
        if (p < 0) return -1;
        if (p) {
            PyObject *at = PyLong_FromLongLong(t0);
            if (at == NULL) return -1;
            int r = drop(PyObject_CallMethodOneArg(s->blocks, S_begin, at));
            Py_DECREF(at);
            if (r < 0) return -1;
        }
    }
    return 0;
}

/* what coro.throw() left when it raised StopIteration: its value (new reference) */
static PyObject *stop_value(void) {
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    PyErr_NormalizeException(&t, &v, &tb);
    PyObject *value = v ? PyObject_GetAttr(v, S_value) : (Py_INCREF(Py_None), Py_None);
    Py_XDECREF(t);
    Py_XDECREF(v);
    Py_XDECREF(tb);
    return value;
}

/* The step that began at s->t0 ended in an exception, now set: account it (with the pending
 * run handed to the probe first, ``with_run``), then leave the exception set to propagate.
 * Returns PYGEN_ERROR either way (the accounting's own error, if any, replaces it). */
static PySendResult account_raised(Resumed *s, int with_run) {
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    if (NOW(s, &s->t1) < 0 || PROBE_SET(s, finished_ns, s->t1) < 0 ||
        (with_run && hand(s, s->t0) < 0) || long_step(s) < 0) {
        Py_XDECREF(t);
        Py_XDECREF(v);
        Py_XDECREF(tb);
        return PYGEN_ERROR;
    }
    PyErr_Restore(t, v, tb);
    return PYGEN_ERROR;
}

/* Resume the body with ``value`` sent (or thrown, ``thrown``): the loop body of _resumed after
 * its ``yield``. PYGEN_NEXT: *out is what the body yielded; PYGEN_RETURN: *out its value. */
static PySendResult resume(Resumed *s, PyObject *value, int thrown, PyObject **out) {
    *out = NULL;
    s->state = RUNNING;
    long long t0, w;
    if (NOW(s, &t0) < 0) goto fail;
    s->t0 = t0;
    w = t0 - s->t1;
    if (0 < w && w < s->res) { /* TaskProbe.wait of a short piece, inline */
        s->aw += w;
        if (t0 - s->ps >= s->res) {
            if (hand_flush(s, t0) < 0) goto fail;
            zero_run(s, t0);
        }
    } else if (w > 0) {
        if (hand_wait(s, s->ps, s->t1, s->pc_ + s->ac, s->pw + s->aw, s->ac, s->aw, t0) < 0)
            goto fail;
        zero_run(s, t0);
    }
    if (begin_step(s) < 0) goto fail;
    PySendResult r;
    if (!thrown) {
        r = PyIter_Send(s->coro, value, out);
    } else {
        *out = PyObject_CallMethodOneArg(s->coro, S_throw, value);
        if (*out != NULL) {
            r = PYGEN_NEXT;
        } else if (PyErr_ExceptionMatches(PyExc_StopIteration)) {
            *out = stop_value();
            r = *out ? PYGEN_RETURN : PYGEN_ERROR;
        } else {
            r = PYGEN_ERROR;
        }
    }
    if (r == PYGEN_RETURN) {
        s->state = FINISHED;
        if (on_return(s) < 0) {
            Py_CLEAR(*out);
            return PYGEN_ERROR;
        }
        return PYGEN_RETURN;
    }
    if (r == PYGEN_ERROR) { /* account the step, then let what the body raised propagate */
        s->state = FINISHED;
        return account_raised(s, 1);
    }
    if (NOW(s, &s->t1) < 0 || after_step(s) < 0) {
        Py_CLEAR(*out);
        goto fail;
    }
    s->state = SUSPENDED;
    return PYGEN_NEXT;
fail:
    s->state = FINISHED;
    return PYGEN_ERROR;
}

/* -- the iterator / awaitable protocol, as a generator's --------------------------------------- */
static PySendResult am_send(PyObject *self, PyObject *arg, PyObject **out) {
    Resumed *s = (Resumed *)self;
    *out = NULL;
    switch (s->state) {
    case FRESH:
        if (arg != Py_None) {
            PyErr_SetString(PyExc_TypeError,
                            "can't send non-None value to a just-started generator");
            return PYGEN_ERROR;
        }
        s->state = RUNNING;
        if (after_step(s) < 0) {
            s->state = FINISHED;
            return PYGEN_ERROR;
        }
        s->state = SUSPENDED;
        *out = s->yielded;
        s->yielded = NULL;
        return PYGEN_NEXT;
    case SUSPENDED:
        return resume(s, arg, 0, out);
    case RUNNING:
        PyErr_SetString(PyExc_ValueError, "generator already executing");
        return PYGEN_ERROR;
    default: /* over: as an exhausted generator, nothing more */
        *out = Py_NewRef(Py_None);
        return PYGEN_RETURN;
    }
}

static PyObject *returned(PySendResult r, PyObject *out) {
    /* generator.send()'s way of reporting: the value yielded, or StopIteration(value) */
    if (r == PYGEN_NEXT) return out;
    if (r == PYGEN_RETURN) {
        if (out == Py_None) {
            PyErr_SetNone(PyExc_StopIteration);
        } else {
            PyObject *e = PyObject_CallOneArg(PyExc_StopIteration, out);
            if (e != NULL) {
                PyErr_SetObject(PyExc_StopIteration, e);
                Py_DECREF(e);
            }
        }
        Py_DECREF(out);
    }
    return NULL;
}

static PyObject *r_iternext(PyObject *self) {
    PyObject *out;
    PySendResult r = am_send(self, Py_None, &out);
    if (r == PYGEN_RETURN && out == Py_None) { /* exhausted: no StopIteration object needed */
        Py_DECREF(out);
        return NULL;
    }
    return returned(r, out);
}

static PyObject *r_send(PyObject *self, PyObject *arg) {
    PyObject *out;
    PySendResult r = am_send(self, arg, &out);
    return returned(r, out);
}

/* throw(exc) / throw(type[, value[, traceback]]): as the generator, into the body */
static PyObject *r_throw(PyObject *self, PyObject *const *args, Py_ssize_t n) {
    Resumed *s = (Resumed *)self;
    if (n < 1 || n > 3) {
        PyErr_SetString(PyExc_TypeError, "throw expected 1 to 3 arguments");
        return NULL;
    }
    PyObject *typ = args[0], *val = n > 1 ? args[1] : Py_None, *tb = n > 2 ? args[2] : Py_None;
    PyObject *exc;
    if (PyExceptionInstance_Check(typ)) {
        exc = Py_NewRef(typ);
    } else if (PyExceptionClass_Check(typ)) {
        if (val != Py_None && PyObject_TypeCheck(val, (PyTypeObject *)typ)) {
            exc = Py_NewRef(val);
        } else if (val == Py_None) {
            exc = PyObject_CallNoArgs(typ);
        } else {
            exc = PyObject_CallOneArg(typ, val);
        }
        if (exc == NULL) return NULL;
    } else {
        PyErr_SetString(PyExc_TypeError,
                        "exceptions must be classes or instances deriving from BaseException");
        return NULL;
    }
    if (tb != Py_None && PyException_SetTraceback(exc, tb) < 0) {
        Py_DECREF(exc);
        return NULL;
    }
    if (s->state != SUSPENDED) { /* not yet started, or over: raised here, as a generator does */
        if (s->state == RUNNING) {
            Py_DECREF(exc);
            PyErr_SetString(PyExc_ValueError, "generator already executing");
            return NULL;
        }
        s->state = FINISHED;
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
        return NULL;
    }
    PyObject *out;
    PySendResult r = resume(s, exc, 1, &out);
    Py_DECREF(exc);
    return returned(r, out);
}

static PyObject *r_close(PyObject *self, PyObject *Py_UNUSED(ignored)) {
    Resumed *s = (Resumed *)self;
    if (s->state != SUSPENDED) {
        if (s->state == RUNNING) {
            PyErr_SetString(PyExc_ValueError, "generator already executing");
            return NULL;
        }
        s->state = FINISHED;
        Py_RETURN_NONE;
    }
    PyObject *exc = PyObject_CallNoArgs(PyExc_GeneratorExit);
    if (exc == NULL) return NULL;
    PyObject *out;
    PySendResult r = resume(s, exc, 1, &out);
    Py_DECREF(exc);
    if (r == PYGEN_NEXT) {
        Py_DECREF(out);
        PyErr_SetString(PyExc_RuntimeError, "generator ignored GeneratorExit");
        return NULL;
    }
    if (r == PYGEN_RETURN) {
        Py_DECREF(out);
        Py_RETURN_NONE;
    }
    if (PyErr_ExceptionMatches(PyExc_GeneratorExit) ||
        PyErr_ExceptionMatches(PyExc_StopIteration)) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    return NULL;
}

static PyObject *r_self(PyObject *self) { return Py_NewRef(self); }

static int r_traverse(Resumed *s, visitproc visit, void *arg) {
    Py_VISIT(s->coro);
    Py_VISIT(s->probe);
    Py_VISIT(s->clock);
    Py_VISIT(s->blocks);
    Py_VISIT(s->yielded);
    Py_VISIT(s->pc);
    Py_VISIT(s->tt);
    return 0;
}

static int r_clear(Resumed *s) {
    Py_CLEAR(s->coro);
    Py_CLEAR(s->probe);
    Py_CLEAR(s->clock);
    Py_CLEAR(s->blocks);
    Py_CLEAR(s->yielded);
    Py_CLEAR(s->pc);
    Py_CLEAR(s->tt);
    return 0;
}

static void r_dealloc(Resumed *s) {
    PyObject_GC_UnTrack(s);
    r_clear(s);
    PyObject_GC_Del(s);
}

static PyMethodDef r_methods[] = {
    {"send", (PyCFunction)r_send, METH_O, "Resume the body with a value, as generator.send."},
    {"throw", (PyCFunction)(void (*)(void))r_throw, METH_FASTCALL,
     "Raise an exception in the body, as generator.throw."},
    {"close", (PyCFunction)r_close, METH_NOARGS, "Close the body, as generator.close."},
    {NULL, NULL, 0, NULL},
};

static PyAsyncMethods r_async = {
    .am_await = r_self,
    .am_send = am_send,
};

static PyTypeObject ResumedType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lanepar.trace._stepc.Resumed",
    .tp_basicsize = sizeof(Resumed),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The steps of a traced body after its first (see lanepar.trace.probe._resumed).",
    .tp_dealloc = (destructor)r_dealloc,
    .tp_traverse = (traverseproc)r_traverse,
    .tp_clear = (inquiry)r_clear,
    .tp_as_async = &r_async,
    .tp_iter = r_self,
    .tp_iternext = r_iternext,
    .tp_methods = r_methods,
};

/* -- Clock ------------------------------------------------------------------------------------ */
static PyObject *clock_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    if (PyTuple_GET_SIZE(args) || (kw && PyDict_GET_SIZE(kw))) {
        PyErr_SetString(PyExc_TypeError, "Clock() takes no arguments");
        return NULL;
    }
    Clock *c = (Clock *)type->tp_alloc(type, 0);
    if (c == NULL) return NULL;
    c->slot = -1;
    c->blocks = Py_NewRef(Py_None);
    c->states = Py_NewRef(Py_None);
    c->contention = Py_NewRef(Py_None);
    return (PyObject *)c;
}

static int clock_traverse(Clock *c, visitproc visit, void *arg) {
    Py_VISIT(c->blocks);
    Py_VISIT(c->states);
    Py_VISIT(c->contention);
    return 0;
}

static int clock_clear(Clock *c) {
    Py_CLEAR(c->blocks);
    Py_CLEAR(c->states);
    Py_CLEAR(c->contention);
    return 0;
}

static void clock_dealloc(Clock *c) {
    PyObject_GC_UnTrack(c);
    clock_clear(c);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

static PyMemberDef clock_members[] = {
    {"w", T_LONGLONG, offsetof(Clock, w), 0, "the wall clock at the last thread-clock reading"},
    {"c", T_LONGLONG, offsetof(Clock, c), 0, "that thread-clock reading"},
    {"held", T_LONGLONG, offsetof(Clock, held), 0, "how long traced steps held the loop"},
    {"held_end", T_LONGLONG, offsetof(Clock, held_end), 0, "when the last of them ended"},
    {"slot", T_LONGLONG, offsetof(Clock, slot), 0, "the loop thread's thread-watch slot"},
    {"blocks", T_OBJECT, offsetof(Clock, blocks), 0, "the loop watch, or None"},
    {"states", T_OBJECT, offsetof(Clock, states), 0, "the thread watch, or None"},
    {"contention", T_OBJECT, offsetof(Clock, contention), 0, "its running sums, or None"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject ClockType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lanepar.trace._stepc.Clock",
    .tp_basicsize = sizeof(Clock),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "One loop thread's record (see lanepar.trace._loopclock._Clock).",
    .tp_new = clock_new,
    .tp_dealloc = (destructor)clock_dealloc,
    .tp_traverse = (traverseproc)clock_traverse,
    .tp_clear = (inquiry)clock_clear,
    .tp_members = clock_members,
};

/* -- StepMark --------------------------------------------------------------------------------- */
static PyObject *mark_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    StepMark *m = (StepMark *)type->tp_alloc(type, 0);
    if (m == NULL) return NULL;
    pthread_condattr_t ca;
    if (pthread_mutex_init(&m->mu, NULL) != 0 || pthread_condattr_init(&ca) != 0 ||
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
        pthread_cond_init(&m->cv, &ca) != 0) {
        Py_DECREF(m);
        return PyErr_NoMemory();
    }
    pthread_condattr_destroy(&ca);
    m->ready = 1;
    return (PyObject *)m;
}

static void mark_dealloc(StepMark *m) {
    if (m->ready) {
        pthread_cond_destroy(&m->cv);
        pthread_mutex_destroy(&m->mu);
    }
    Py_TYPE(m)->tp_free((PyObject *)m);
}

static long long mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* StepMark.watch(threshold_ns, park_after_ns, last_begin): the watchdog's polling, without the
 * GIL. A Python thread that woke every threshold to look at t0 took the GIL from a busy loop
 * each time: up to a switch interval (5 ms) of waiting, during which every turn of the loop
 * paid a futex call to wake it, only for it to lose the race again (15 000 futex calls on each
 * side in a traced batch of 320 000 steps). Here it sleeps until the step it saw would cross
 * the threshold, looks, and returns only when there is something for Python to do: the start
 * of a step running past the threshold, not reported before (> 0; the caller takes its stack),
 * -1 when no step has begun for park_after_ns since last_begin (the caller parks), 0 when
 * stopped (stop_watch). */
static PyObject *mark_watch(StepMark *m, PyObject *const *args, Py_ssize_t nargs) {
    long long threshold, park_after, last_begin, r = 0;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "watch(threshold_ns, park_after_ns, last_begin)");
        return NULL;
    }
    if (to_ll(args[0], &threshold) < 0 || to_ll(args[1], &park_after) < 0 ||
        to_ll(args[2], &last_begin) < 0)
        return NULL;
    if (threshold <= 0) {
        PyErr_SetString(PyExc_ValueError, "threshold_ns must be > 0");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&m->mu);
    while (!m->stop) {
        /* the clock before the step: a thread preempted between the two reads must not pair a
         * late clock with a step that had not begun */
        long long now = mono_ns(), due;
        long long t0 = __atomic_load_n(&m->t0, __ATOMIC_RELAXED);
        if (!t0) {
            if (now - last_begin > park_after) {
                r = -1;
                break;
            }
            due = now + threshold;
        } else {
            if (t0 > last_begin) last_begin = t0;
            due = t0 + threshold;
            if (now >= due) {
                if (t0 != m->reported) {
                    m->reported = r = t0;
                    break;
                }
                due = now + threshold;
            }
        }
        struct timespec ts = {(time_t)(due / 1000000000LL), (long)(due % 1000000000LL)};
        while (!m->stop && pthread_cond_timedwait(&m->cv, &m->mu, &ts) == EINTR) {
        }
    }
    pthread_mutex_unlock(&m->mu);
    Py_END_ALLOW_THREADS
    return PyLong_FromLongLong(r);
}

static PyObject *mark_stop_watch(StepMark *m, PyObject *unused) {
    Py_BEGIN_ALLOW_THREADS /* (the watchdog holds the mutex only between its waits) */
    pthread_mutex_lock(&m->mu);
    m->stop = 1;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyMethodDef mark_methods[] = {
    {"watch", (PyCFunction)(void (*)(void))mark_watch, METH_FASTCALL,
     "watch(threshold_ns, park_after_ns, last_begin) -> int: wait, without the GIL, for a step "
     "past the threshold (its start), an idle spell to park after (-1) or stop_watch() (0)"},
    {"stop_watch", (PyCFunction)mark_stop_watch, METH_NOARGS,
     "end watch() now, and every later call at once"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef mark_members[] = {
    {"t0", T_LONGLONG, offsetof(StepMark, t0), 0, "start of the step running now (0: none)"},
    {"parked", T_BOOL, offsetof(StepMark, parked), 0, "whether the watchdog is parked"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject StepMarkType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lanepar.trace._stepc.StepMark",
    .tp_basicsize = sizeof(StepMark),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The loop watch's per-step fields (see lanepar.trace.loopwatch.LoopWatch).",
    .tp_new = mark_new,
    .tp_dealloc = (destructor)mark_dealloc,
    .tp_members = mark_members,
    .tp_methods = mark_methods,
};

/* -- the module ------------------------------------------------------------------------------ */
#define arg_ll to_ll

/* The probe's fields by their __slots__ cells: the offsets of the last probe type seen (one in
 * practice; a reference to it is kept, so its address stays its own), -1 each where one is not
 * a slot (then attribute access). */
static void offsets(Resumed *s) {
    static PyTypeObject *known;
    static Py_ssize_t off[11];
    PyObject *names[11] = {S_p_start, S_p_end, S_p_cpu, S_p_wait, S_cpu_ns, S_wait_ns,
                           S_finished_ns, S_segs, S_max_segments, S_started_ns, S_resolution};
    int i, all = 1;
    if (Py_TYPE(s->probe) != known) {
        for (i = 0; i < 11; i++) all &= (off[i] = slot_offset(s->probe, names[i])) >= 0;
        Py_XSETREF(known, all ? (PyTypeObject *)Py_NewRef(Py_TYPE(s->probe)) : NULL);
        if (!all)
            for (i = 0; i < 11; i++) off[i] = -1;
    }
    s->off_p_start = off[0];
    s->off_p_end = off[1];
    s->off_p_cpu = off[2];
    s->off_p_wait = off[3];
    s->off_cpu_ns = off[4];
    s->off_wait_ns = off[5];
    s->off_finished_ns = off[6];
    s->off_segs = off[7];
    s->off_max_segments = off[8];
    s->off_started_ns = off[9];
    s->off_resolution = off[10];
    s->bm = s->blocks && PyObject_TypeCheck(s->blocks, &StepMarkType) ? (StepMark *)s->blocks
                                                                        : NULL;
}

/* A driver for ``coro`` under ``probe`` on the loop thread whose record is ``clock``, reading
 * the clocks ``pc`` / ``tt`` (the real ones directly); its step state is the caller's to set. */
static Resumed *new_resumed(PyObject *coro, PyObject *probe, PyObject *clock, PyObject *pc,
                            PyObject *tt) {
    if (g_globals == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "lanepar.trace._stepc.setup() was not called");
        return NULL;
    }
    Clock *cc = Py_IS_TYPE(clock, &ClockType) ? (Clock *)clock : NULL;
    PyObject *blocks = cc ? Py_NewRef(cc->blocks ? cc->blocks : Py_None)
                          : PyObject_GetAttr(clock, S_blocks);
    if (blocks == NULL) return NULL;
    Resumed *s = PyObject_GC_New(Resumed, &ResumedType);
    if (s == NULL) {
        Py_DECREF(blocks);
        return NULL;
    }
    s->coro = Py_NewRef(coro);
    s->probe = Py_NewRef(probe);
    s->clock = Py_NewRef(clock);
    s->cc = cc;
    s->yielded = NULL;
    if (blocks == Py_None) Py_CLEAR(blocks);
    s->blocks = blocks;
    s->pc = pc == g_real_pc ? NULL : Py_NewRef(pc);
    s->tt = tt == g_real_tt ? NULL : Py_NewRef(tt);
    s->t0 = s->t1 = s->c0 = s->ps = s->pc_ = s->pw = s->ac = s->aw = 0;
    s->state = FINISHED; /* (until the caller has set it up) */
    offsets(s);
    PyObject_GC_Track(s);
    if (PROBE_GET(s, resolution, &s->res) < 0) {
        Py_DECREF(s);
        return NULL;
    }
    s->shrt = g_fresh < s->res ? g_fresh : s->res; /* a step this short is all CPU */
    return s;
}

/* The probe's pending run, which the first step may have left, as the driver's own. */
static int take_pending(Resumed *s) {
    if (PROBE_GET(s, p_start, &s->ps) < 0 || PROBE_GET(s, p_cpu, &s->pc_) < 0 ||
        PROBE_GET(s, p_wait, &s->pw) < 0)
        return -1;
    if (s->ps < 0) s->ps = s->t0;
    s->ac = s->aw = 0;
    s->state = FRESH;
    return 0;
}

/* resumed(coro, probe, yielded, t0, t1, c0, clock, pc, tt): _resumed's arguments, plus the
 * loop thread's record and the clocks the caller reads (the real ones are read directly) */
static PyObject *m_resumed(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t n) {
    if (n != 9) {
        PyErr_SetString(PyExc_TypeError, "resumed() takes 9 arguments");
        return NULL;
    }
    long long t0, t1, c0;
    if (arg_ll(args[3], &t0) < 0 || arg_ll(args[4], &t1) < 0 || arg_ll(args[5], &c0) < 0)
        return NULL;
    Resumed *s = new_resumed(args[0], args[1], args[6], args[7], args[8]);
    if (s == NULL) return NULL;
    s->yielded = Py_NewRef(args[2]);
    s->t0 = t0;
    s->t1 = t1;
    s->c0 = c0;
    if (take_pending(s) < 0) {
        Py_DECREF(s);
        return NULL;
    }
    return (PyObject *)s;
}

/* The one-step body's record: all CPU, one segment (as probe.first_step draws it). */
static int one_short_step(Resumed *s, long long d) {
    if (probe_add(s, s->off_cpu_ns, S_cpu_ns, d) < 0) return -1;
    PyObject *segs = Py_BuildValue("[[OLL]]", g_cpu, s->t0, s->t1);
    if (segs == NULL) return -1;
    int r = PyObject_SetAttr(s->probe, S_segs, segs);
    Py_DECREF(segs);
    return r < 0 ? -1 : short_step(s, d);
}

/* first_step(coro, probe): lanepar.trace.probe.first_step, statement for statement, with the
 * clocks and loop record that module's globals name (so a test's fake clock reaches it). */
static PyObject *m_first_step(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t n) {
    if (n != 2) {
        PyErr_SetString(PyExc_TypeError, "first_step() takes 2 arguments");
        return NULL;
    }
    if (g_globals == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "lanepar.trace._stepc.setup() was not called");
        return NULL;
    }
    PyObject *pc = PyDict_GetItemWithError(g_globals, S__pc); /* borrowed */
    PyObject *tt = pc ? PyDict_GetItemWithError(g_globals, S__tt) : NULL;
    PyObject *local = tt ? PyDict_GetItemWithError(g_globals, S__clock) : NULL;
    if (local == NULL) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_RuntimeError, "probe's clocks are gone");
        return NULL;
    }
    PyObject *clock = PyObject_GetAttr(local, S_s);
    if (clock == NULL) return NULL;
    Resumed *s = new_resumed(args[0], args[1], clock, pc, tt);
    Py_DECREF(clock);
    if (s == NULL) return NULL;
    PyObject *out = NULL, *result = NULL;
    if (NOW(s, &s->t0) < 0 || PROBE_SET(s, started_ns, s->t0) < 0 || begin_step(s) < 0)
        goto done;
    PySendResult r = PyIter_Send(s->coro, Py_None, &out);
    if (r == PYGEN_ERROR) { /* account the step, then let what the body raised propagate */
        account_raised(s, 0);
        goto done;
    }
    if (NOW(s, &s->t1) < 0) goto done;
    if (r == PYGEN_RETURN) {
        long long d = s->t1 - s->t0, ps;
        if (PROBE_SET(s, finished_ns, s->t1) < 0 || PROBE_GET(s, p_start, &ps) < 0) goto done;
        int has_segs = ps < 0 ? probe_has_segs(s) : 1;
        if (has_segs < 0) goto done;
        if ((d < g_fresh && !has_segs ? one_short_step(s, d) : long_step(s)) < 0) goto done;
        result = PyTuple_Pack(2, Py_True, out);
        goto done;
    }
    s->yielded = out; /* suspended: the rest of its steps are this driver's */
    out = NULL;
    if (take_pending(s) < 0) goto done;
    result = PyTuple_Pack(2, Py_False, (PyObject *)s);
done:
    Py_XDECREF(out);
    Py_DECREF(s);
    return result;
}

/* setup(step, hand_and_wait, cpu, wait, fresh_ns, perf_counter_ns, thread_time_ns, globals,
 *       long_step, long_step_off_ns) */
static PyObject *m_setup(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t n) {
    if (n != 10 || !PyDict_Check(args[7])) {
        PyErr_SetString(PyExc_TypeError, "setup() takes 10 arguments, the eighth a dict");
        return NULL;
    }
    if (arg_ll(args[4], &g_fresh) < 0 || arg_ll(args[9], &g_long_off) < 0) return NULL;
    Py_XSETREF(g_long_step, Py_NewRef(args[8]));
    Py_XSETREF(g_step, Py_NewRef(args[0]));
    Py_XSETREF(g_hand_and_wait, Py_NewRef(args[1]));
    Py_XSETREF(g_cpu, Py_NewRef(args[2]));
    Py_XSETREF(g_wait, Py_NewRef(args[3]));
    Py_XSETREF(g_real_pc, Py_NewRef(args[5]));
    Py_XSETREF(g_real_tt, Py_NewRef(args[6]));
    Py_XSETREF(g_globals, Py_NewRef(args[7]));
    Py_RETURN_NONE;
}

#include "_recordc.c" /* a plain traced task's record (settle_plain) */
#include "_handc.c"   /* a traced sync body handed to a thread (hand_plain) */
#include "_watchc.c"  /* a thread body's off-CPU split (watch_split, read_runq) */
#include "_procc.c"   /* the core sampler's /proc reads (proc_cores, proc_stat_cpu) */
#include "_latec.c"   /* a late start's contention (late_start) */

static PyMethodDef m_methods[] = {
    {"resumed", (PyCFunction)(void (*)(void))m_resumed, METH_FASTCALL,
     "The rest of a traced body's steps, to be awaited (see lanepar.trace.probe._resumed)."},
    {"first_step", (PyCFunction)(void (*)(void))m_first_step, METH_FASTCALL,
     "A traced body's first step (see lanepar.trace.probe.first_step)."},
    {"setup", (PyCFunction)(void (*)(void))m_setup, METH_FASTCALL,
     "Hand over the probe's helpers for the rare branches, its constants and real clocks."},
    {"settle_plain", (PyCFunction)(void (*)(void))m_settle_plain, METH_FASTCALL,
     "A plain traced task's record (see lanepar.run._settle.settle_plain)."},
    {"untrack", (PyCFunction)m_untrack, METH_O,
     "A kept TaskRecord taken out of the cyclic GC's lists (it closes no cycle)."},
    {"probe_plain", (PyCFunction)m_probe_plain, METH_O,
     "lanepar.run._settle.plain(probe), without making the probe's __dict__."},
    {"probe_new", (PyCFunction)(void (*)(void))m_probe_new, METH_FASTCALL,
     "TaskProbe(resolution_ns, max_segments), its __init__'s stores made in C."},
    {"setup_settle", (PyCFunction)(void (*)(void))m_setup_settle, METH_FASTCALL,
     "Hand over settle_plain's Python version and the types whose slots it fills."},
    {"watch_split", (PyCFunction)(void (*)(void))m_watch_split, METH_FASTCALL,
     "ThreadWatch._split over the shared sample ring."},
    {"read_runq", (PyCFunction)m_read_runq, METH_O,
     "A schedstat file's run-queue field, read from offset 0 with the GIL kept."},
    {"proc_cores", (PyCFunction)m_proc_cores, METH_O,
     "/proc/stat's (busy, total) jiffies per core, read from offset 0 with the GIL kept."},
    {"proc_stat_cpu", (PyCFunction)(void (*)(void))m_proc_stat_cpu, METH_FASTCALL,
     "A process's user + system CPU seconds from its stat file, read with the GIL kept."},
    {"setup_watch", (PyCFunction)(void (*)(void))m_setup_watch, METH_FASTCALL,
     "The kind codes, class kinds and ring layout watch_split uses."},
    {"hand_plain", (PyCFunction)(void (*)(void))m_hand_plain, METH_FASTCALL,
     "A traced sync body handed to a thread (see lanepar.run._hotpath.hand_sync), or None."},
    {"setup_hand", (PyCFunction)(void (*)(void))m_setup_hand, METH_FASTCALL,
     "Hand over what hand_plain makes and calls, and the types whose slots it reads."},
    {"late_start", (PyCFunction)(void (*)(void))m_late_start, METH_FASTCALL,
     "A late start's contention, put in front of the body (see lanepar.trace._late)."},
    {"late_begin", (PyCFunction)(void (*)(void))m_late_begin, METH_FASTCALL,
     "What a late start reads as its body begins (see lanepar.trace._late.late_begin_py)."},
    {"setup_runs", (PyCFunction)(void (*)(void))m_setup_runs, METH_FASTCALL,
     "Hand over the CumulativeRuns type and its GIL / run-queue codes (loop_waits' C path)."},
    {"loop_waits", (PyCFunction)(void (*)(void))m_loop_waits, METH_FASTCALL,
     "lanepar.trace.probe.loop_waits in C where the samples' picture is up to date."},
    {"setup_late", (PyCFunction)(void (*)(void))m_setup_late, METH_FASTCALL,
     "Hand over late_start's look-up, the loop clock's thread-local and its constants."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef stepc_module = {
    PyModuleDef_HEAD_INIT, "_stepc", "lanepar's step driver of traced async bodies, in C.", -1,
    m_methods,
};

PyMODINIT_FUNC PyInit__stepc(void) {
#define INTERN(var, text) \
    if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL;
    INTERN(S_held, "held")
    INTERN(S_held_end, "held_end")
    INTERN(S_w, "w")
    INTERN(S_c, "c")
    INTERN(S_t0, "t0")
    INTERN(S_parked, "parked")
    INTERN(S_begin, "begin")
    INTERN(S_p_start, "p_start")
    INTERN(S_p_cpu, "p_cpu")
    INTERN(S_p_wait, "p_wait")
    INTERN(S_p_end, "p_end")
    INTERN(S_cpu_ns, "cpu_ns")
    INTERN(S_wait_ns, "wait_ns")
    INTERN(S_segs, "segs")
    INTERN(S_finished_ns, "finished_ns")
    INTERN(S_flush, "_flush")
    INTERN(S_max_segments, "max_segments")
    INTERN(S_started_ns, "started_ns")
    INTERN(S_resolution, "resolution")
    INTERN(S_s, "s")
    INTERN(S__pc, "_pc")
    INTERN(S__tt, "_tt")
    INTERN(S__clock, "_clock")
    INTERN(S_blocks, "blocks")
    INTERN(S_threshold_ns, "threshold_ns")
    INTERN(S_close_pending, "_close_pending")
    INTERN(S_coarsen, "_coarsen")
    INTERN(S_throw, "throw")
    INTERN(S_value, "value")
#undef INTERN
    if (settle_intern() < 0 || hand_intern() < 0) return NULL;
    if (PyType_Ready(&ResumedType) < 0 || PyType_Ready(&ClockType) < 0 ||
        PyType_Ready(&StepMarkType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&stepc_module);
    if (m == NULL) return NULL;
    Py_INCREF(&ResumedType);
    if (PyModule_AddObject(m, "Resumed", (PyObject *)&ResumedType) < 0) {
        Py_DECREF(&ResumedType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddType(m, &ClockType) < 0 || PyModule_AddType(m, &StepMarkType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
