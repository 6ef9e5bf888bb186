/* A late start's contention, in C: lanepar.trace._late.late_start_py (start_waits, then
 * TaskProbe.prepend_contention), statement for statement.
 *
 * Why C: a batch's fan-out starts its tasks one after another on the loop, so nearly every task
 * of a wide batch starts late and asks, as its body ends, what held it back (other tools' steps,
 * the GIL, a core). In Python that was two calls and their helpers — a few µs of the loop's time
 * a task, taken in the burst of replies at the batch's end, where the loop is the bottleneck
 * (at 64 loopback fetches, about 1 % of the batch's wall). The look-up in the thread watch's
 * samples, which few windows need (the loop thread was off its CPU in the window), is C too
 * where the samples' running sums are up to date (c_loop_waits: two bisections); taking new
 * samples in stays Python (lanepar.trace.probe.loop_waits, once a batch or so). late_begin
 * reads, as the body begins, what late_start needs at its end. Tests hold each to the Python
 * one (tests/test_late_c.py, test_late_begin_c.py, test_loop_waits_c.py).
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

/* -- the look-up itself: loop_waits over a CumulativeRuns whose picture is up to date ---------- */
/* what setup_runs hands over: the CumulativeRuns type and _cumruns' _GIL / _RUNQ codes */
static PyTypeObject *g_runs_type;
static long long g_run_gil = 1, g_run_runq = 2;
static PyObject *S__last, *S__bounds, *S__cg, *S__cr, *S__kinds, *S__seen, *S__slot, *S__written,
    *S__period, *S_current_period_ns;

/* a list's item as an int (-2: not a list of that length, for the Python path to meet) */
static int item_ll(PyObject *list, Py_ssize_t i, long long *out) {
    if (!PyList_CheckExact(list) || i < 0 || i >= PyList_GET_SIZE(list)) return -2;
    return to_ll(PyList_GET_ITEM(list, i), out) < 0 ? -1 : 0;
}

/* CumulativeRuns._at(t) for a picture with bounds: 0, -1 error, -2 leave it to Python */
static int runs_at(PyObject *bounds, PyObject *cg, PyObject *cr, PyObject *kinds, long long t,
                   long long *g, long long *r) {
    Py_ssize_t lo = 0, hi = PyList_GET_SIZE(bounds);
    while (lo < hi) { /* bisect_right */
        Py_ssize_t mid = (lo + hi) / 2;
        long long b;
        int k = item_ll(bounds, mid, &b);
        if (k < 0) return k;
        if (t < b) hi = mid;
        else lo = mid + 1;
    }
    long long bg = 0, br = 0, start, kind;
    int k = item_ll(bounds, lo ? lo - 1 : 0, &start);
    if (k == 0 && lo) k = item_ll(cg, lo - 1, &bg);
    if (k == 0 && lo) k = item_ll(cr, lo - 1, &br);
    if (k == 0) k = item_ll(kinds, lo, &kind);
    if (k < 0) return k;
    long long d = t - start;
    *g = bg + (kind == g_run_gil ? d : 0);
    *r = br + (kind == g_run_runq ? d : 0);
    return 0;
}

/* o.name() as an int */
static int call_ll0(PyObject *o, PyObject *name, long long *out) {
    return own_ll(PyObject_CallMethodNoArgs(o, name), out);
}

/* CumulativeRuns.between(t0, t1) where no sample came since its last look (its picture is up to
 * date): 1 done, 0 leave it to Python (a first look, a stale window, new samples, another
 * type), -1 error. Only the watch's pure reads are called (_written, _period). */
static int fast_between(PyObject *runs, long long t0, long long t1, long long *g, long long *r) {
    if (t1 <= t0) {
        *g = *r = 0;
        return 1;
    }
    if (g_runs_type == NULL || !Py_IS_TYPE(runs, g_runs_type)) return 0;
    PyObject *last = NULL, *bounds = NULL, *written_fn = NULL, *cg = NULL, *cr = NULL,
             *kinds = NULL, *slot = NULL;
    int out = -1;
    long long b0, written, seen, last_t, period, g0, r0, g1, r1;
    if ((last = PyObject_GetAttr(runs, S__last)) == NULL ||
        (bounds = PyObject_GetAttr(runs, S__bounds)) == NULL ||
        (written_fn = PyObject_GetAttr(runs, S__written)) == NULL)
        goto done;
    out = 0;
    if (!PyTuple_Check(last) || PyTuple_GET_SIZE(last) < 1 || !PyList_CheckExact(bounds) ||
        PyList_GET_SIZE(bounds) == 0 || written_fn == Py_None)
        goto done;
    out = -1;
    if (to_ll(PyList_GET_ITEM(bounds, 0), &b0) < 0 || to_ll(PyTuple_GET_ITEM(last, 0), &last_t) < 0)
        goto done;
    out = 0;
    if (b0 > t0) goto done; /* (stale: Python starts its picture afresh) */
    out = -1;
    if ((slot = PyObject_GetAttr(runs, S__slot)) == NULL) goto done;
    if (own_ll(PyObject_CallOneArg(written_fn, slot), &written) < 0 ||
        get_ll(runs, S__seen, &seen) < 0)
        goto done;
    out = 0;
    if (written < 0 || written != seen) goto done; /* (new samples: Python takes them in) */
    out = -1;
    if (call_ll0(runs, S__period, &period) < 0) goto done;
    if (last_t < t0 - 2 * period) {
        *g = *r = 0;
        out = 1;
        goto done;
    }
    if ((cg = PyObject_GetAttr(runs, S__cg)) == NULL || (cr = PyObject_GetAttr(runs, S__cr)) == NULL ||
        (kinds = PyObject_GetAttr(runs, S__kinds)) == NULL)
        goto done;
    int k = runs_at(bounds, cg, cr, kinds, t0, &g0, &r0);
    if (k == 0) k = runs_at(bounds, cg, cr, kinds, t1, &g1, &r1);
    out = k == 0 ? 1 : k == -2 ? 0 : -1;
    if (out == 1) {
        *g = g1 - g0;
        *r = r1 - r0;
    }
done:
    Py_XDECREF(last);
    Py_XDECREF(bounds);
    Py_XDECREF(written_fn);
    Py_XDECREF(slot);
    Py_XDECREF(cg);
    Py_XDECREF(cr);
    Py_XDECREF(kinds);
    return out;
}

/* lanepar.trace.probe.loop_waits: its own early answers (nothing to look up), and the look-up
 * where the picture is up to date: 1 done, 0 leave it to Python, -1 error (hand_off_waits in
 * _cumruns, loop_contention in probe: the references) */
static int c_loop_waits(long long t0, long long t1, long long cpu0, long long cpu1, long long *gil,
                        long long *runq) {
    PyObject *local = PyObject_GetAttr(g_clock_local, S_s);
    if (local == NULL) return -1;
    int out = 0;
    if (!Py_IS_TYPE(local, &ClockType)) goto done;
    PyObject *states = ((Clock *)local)->states, *runs = ((Clock *)local)->contention;
    long long wall = t1 - t0, sg = 0, sr = 0;
    if (!(cpu0 && cpu1) || states == Py_None || wall < g_lookup_min) { /* loop_contention */
        if (runs == Py_None || wall < g_lookup_min) {
            *gil = *runq = 0;
            out = 1;
        } else {
            out = fast_between(runs, t0, t1, gil, runq);
        }
        goto done;
    }
    long long cpu = cpu1 - cpu0;
    if (wall - cpu < g_off_noise) {
        *gil = *runq = 0;
        out = 1;
        goto done;
    }
    if (runs != Py_None && (out = fast_between(runs, t0, t1, &sg, &sr)) <= 0) goto done;
    long long period;
    out = -1;
    if (call_ll0(states, S_current_period_ns, &period) < 0) goto done;
    out = 1;
    long long off = wall - (cpu > 0 ? cpu : 0), seen = sg + sr; /* hand_off_waits */
    if (off <= 0) {
        *gil = *runq = 0;
    } else if (seen <= 0) {
        *gil = wall < 2 * period ? off : 0;
        *runq = 0;
    } else {
        long long total = off < seen + 2 * period ? off : seen + 2 * period;
        *gil = muldiv_floor(total, sg, seen);
        *runq = total - *gil;
    }
done:
    Py_DECREF(local);
    return out;
}

/* setup_runs(CumulativeRuns, _GIL, _RUNQ) */
static PyObject *m_setup_runs(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t n) {
    long long gil, runq;
    if (n != 3 || !PyType_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "setup_runs(CumulativeRuns, _GIL, _RUNQ)");
        return NULL;
    }
    if (to_ll(args[1], &gil) < 0 || to_ll(args[2], &runq) < 0) return NULL;
#define INTERN_RUNS(var, text) \
    if (var == NULL && (var = PyUnicode_InternFromString(text)) == NULL) return NULL;
    INTERN_RUNS(S__last, "_last")
    INTERN_RUNS(S__bounds, "_bounds")
    INTERN_RUNS(S__cg, "_cg")
    INTERN_RUNS(S__cr, "_cr")
    INTERN_RUNS(S__kinds, "_kinds")
    INTERN_RUNS(S__seen, "_seen")
    INTERN_RUNS(S__slot, "_slot")
    INTERN_RUNS(S__written, "_written")
    INTERN_RUNS(S__period, "_period")
    INTERN_RUNS(S_current_period_ns, "current_period_ns")
#undef INTERN_RUNS
    Py_XSETREF(g_runs_type, (PyTypeObject *)Py_NewRef(args[0]));
    g_run_gil = gil;
    g_run_runq = runq;
    Py_RETURN_NONE;
}

/* loop_waits' (gil, runq) pair: in C where the samples' picture is up to date, else Python's */
static int lookup(long long t0, long long t1, long long cpu0, long long cpu1, long long *gil,
                  long long *runq) {
    int done = c_loop_waits(t0, t1, cpu0, cpu1, gil, runq);
    if (done != 0) return done < 0 ? -1 : 0;
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

/* loop_waits(t0, t1, cpu0, cpu1): the C look-up (the Python one where it leaves it), for tests */
static PyObject *m_loop_waits(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t n) {
    long long t[4], g, r;
    if (n != 4 || g_loop_waits == NULL) {
        PyErr_SetString(PyExc_TypeError, n != 4 ? "loop_waits() takes 4 arguments"
                                                : "loop_waits() before setup_late()");
        return NULL;
    }
    for (int i = 0; i < 4; i++)
        if (to_ll(args[i], &t[i]) < 0) return NULL;
    if (lookup(t[0], t[1], t[2], t[3], &g, &r) < 0) return NULL;
    return Py_BuildValue("(LL)", g, r);
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
        if (lookup(t0, t1, cpu0, cpu1, &gil, &runq) < 0) return NULL;
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
        cpu = clock_cpu_at(c, now);
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
