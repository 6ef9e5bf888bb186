/* A traced sync body handed to the executor's threads, in C: lanepar.run._hotpath.hand_sync,
 * LocalBackend.hand_off and DaemonPool.submit_to, statement for statement, for the case a
 * batch's fan-out is made of (no chain to hand along, a loop the backend has handed from
 * before, the pool's threads already under way; a live view's entry is made before it).
 *
 * Why C: a fan-out hands its jobs over one after another on the event loop, each job waiting
 * for every hand-off before its own; in Python one cost the loop 7-15 us here (thirty calls and
 * some hundred attribute reads), which put the demo's median dispatch at 160-320 us. Every
 * other case returns None before touching anything and the Python functions, which stay the
 * reference, do it; tests hold the two to the same queued item, probe and handle.
 *
 * Included by _stepc.c (one extension module); it uses the step driver's int and slot helpers,
 * its Clock type and _recordc.c's type_slot_offset.
 */

/* what lanepar.run._hotpath hands over once (setup_hand) */
static PyObject *g_probe_type, *g_pool_future, *g_guarded, *g_run_probed, *g_thread_time,
    *g_partial, *g_running_loop;
static long long g_lookup_min = 200000;
static PyObject *S__watch, *S__at, *S__closed, *S__spawner, *S__lock, *S__held, *S__q,
    *S__idle, *S__grow, *S__held_grow, *S_condition, *S_body, *S_run, *S_put, *S_acquire,
    *S_release, *S_create_future, *S__running, *S_free_cpu_ns, *S_free_held, *S_hand_held,
    *S_submitted_cpu, *S_submitted_held, *S_free_at, *S_free_cpu, *S_pushed_ns;
/* slot offsets: the worker's and the job's (Worker, Job) */
static Py_ssize_t o_w_free_at, o_w_free_cpu, o_w_free_held, o_w_ctx, o_w_slot, o_j_fn, o_j_args,
    o_j_kwargs, o_j_pushed, o_p_res, o_p_maxseg;

static int hand_intern(void) {
#define INTERN(var, text) \
    if ((var = PyUnicode_InternFromString(text)) == NULL) return -1;
    INTERN(S__watch, "_watch")
    INTERN(S__at, "_at")
    INTERN(S__closed, "_closed")
    INTERN(S__spawner, "_spawner")
    INTERN(S__lock, "_lock")
    INTERN(S__held, "_held")
    INTERN(S__q, "_q")
    INTERN(S__idle, "_idle")
    INTERN(S__grow, "_grow")
    INTERN(S__held_grow, "_held_grow")
    INTERN(S_condition, "condition")
    INTERN(S_body, "body")
    INTERN(S_run, "run")
    INTERN(S_put, "put")
    INTERN(S_acquire, "acquire")
    INTERN(S_release, "release")
    INTERN(S_create_future, "create_future")
    INTERN(S__running, "_running")
    INTERN(S_free_cpu_ns, "free_cpu_ns")
    INTERN(S_free_held, "free_held")
    INTERN(S_hand_held, "hand_held")
    INTERN(S_submitted_cpu, "submitted_cpu")
    INTERN(S_submitted_held, "submitted_held")
    INTERN(S_free_at, "free_at")
    INTERN(S_free_cpu, "free_cpu")
    INTERN(S_pushed_ns, "pushed_ns")
#undef INTERN
    return 0;
}

static PyObject *m_setup_hand(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t n) {
    if (n != 10) {
        PyErr_SetString(PyExc_TypeError,
                        "setup_hand(TaskProbe, PoolFuture, _guarded, run_sync_probed, "
                        "thread_time_ns, partial, _get_running_loop, Worker, Job, "
                        "LOOKUP_MIN_NS) takes 10 arguments");
        return NULL;
    }
    PyObject *probe_t = args[0], *worker_t = args[7], *job_t = args[8];
    if (!PyType_Check(probe_t)) {
        PyErr_SetString(PyExc_TypeError, "setup_hand: TaskProbe must be a type");
        return NULL;
    }
    SlotSpec slots[] = {
        {&o_w_free_at, worker_t, "free_at"}, {&o_w_free_cpu, worker_t, "free_cpu"},
        {&o_w_free_held, worker_t, "free_held"}, {&o_w_ctx, worker_t, "ctx"},
        {&o_w_slot, worker_t, "slot"},       {&o_j_fn, job_t, "fn"},
        {&o_j_args, job_t, "args"},          {&o_j_kwargs, job_t, "kwargs"},
        {&o_j_pushed, job_t, "pushed_ns"},   {&o_p_res, probe_t, "resolution"},
        {&o_p_maxseg, probe_t, "max_segments"},
    };
    if (find_slots(slots, sizeof slots / sizeof slots[0]) < 0) return NULL;
    if (to_ll(args[9], &g_lookup_min) < 0) return NULL;
    PyObject **globals[] = {&g_probe_type, &g_pool_future, &g_guarded, &g_run_probed,
                            &g_thread_time, &g_partial, &g_running_loop};
    for (int i = 0; i < 7; i++) Py_XSETREF(*globals[i], Py_NewRef(args[i]));
    Py_RETURN_NONE;
}

/* a slot's object, new reference (NULL with AttributeError when unset) */
static PyObject *cell_obj(PyObject *o, Py_ssize_t off) {
    PyObject *v = CELL(o, off);
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "a slot is unset");
        return NULL;
    }
    return Py_NewRef(v);
}

/* 1: the attribute is None, 0: it is not, -1: error */
static int attr_is_none(PyObject *o, PyObject *name) {
    PyObject *v = PyObject_GetAttr(o, name);
    if (v == NULL) return -1;
    int r = v == Py_None;
    Py_DECREF(v);
    return r;
}

/* TaskProbe(resolution_ns, max_segments) with free as its start: its __init__'s stores, made
 * into the slots of a new instance (the Python call, its frame and its eleven stores were an
 * eighth of the hand-off) */
static PyObject *new_probe(PyObject *res, PyObject *maxseg, long long free_) {
    long long m;
    if (to_ll(maxseg, &m) < 0) return NULL;
    PyTypeObject *type = (PyTypeObject *)g_probe_type;
    PyObject *p = type->tp_alloc(type, 0);
    if (p == NULL) return NULL;
    PyObject *segs = PyList_New(0), *maxs = PyLong_FromLongLong(m > 2 ? m : 2),
             *start = PyLong_FromLongLong(free_), *minus = PyLong_FromLong(-1),
             *zero = PyLong_FromLong(0);
    if (segs == NULL || maxs == NULL || start == NULL || minus == NULL || zero == NULL) {
        Py_XDECREF(segs);
        Py_XDECREF(maxs);
        Py_XDECREF(start);
        Py_XDECREF(minus);
        Py_XDECREF(zero);
        Py_DECREF(p);
        return NULL;
    }
    CELL(p, o_p_res) = Py_NewRef(res);
    CELL(p, o_p_maxseg) = maxs;
    CELL(p, o_segs) = segs;
    CELL(p, o_p_start) = Py_NewRef(minus);
    CELL(p, o_p_end) = minus;
    CELL(p, o_p_cpu) = Py_NewRef(zero);
    CELL(p, o_p_wait) = Py_NewRef(zero);
    CELL(p, o_cpu) = Py_NewRef(zero);
    CELL(p, o_wait) = Py_NewRef(zero);
    CELL(p, o_finished) = zero;
    CELL(p, o_started) = start;
    return p;
}

/* probe_new(resolution_ns, max_segments): TaskProbe(resolution_ns, max_segments), for a traced
 * async body's start (run/_hotpath.run_traced) as for a hand-off: the Python __init__'s frame
 * and stores ran in every task's fan-out; and a probe made here gets no inline attribute values
 * (object_new's), so checking its __dict__ in C (probe_plain) makes none either. */
static PyObject *m_probe_new(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t n) {
    if (n != 2 || g_probe_type == NULL) {
        PyErr_SetString(PyExc_TypeError, n != 2 ? "probe_new(resolution_ns, max_segments)"
                                                : "probe_new() before setup_hand()");
        return NULL;
    }
    return new_probe(args[0], args[1], 0);
}

/* Worker.clocks_at(free, job) */
static int clocks_at(PyObject *w, PyObject *job, long long free_, long long *cpu,
                     long long *held) {
    long long free_at, pushed, sub;
    if (cell_get(w, o_w_free_at, S_free_at, &free_at) < 0) return -1;
    if (free_ == free_at) {
        if (cell_get(w, o_w_free_cpu, S_free_cpu, cpu) < 0) return -1;
        return cell_get(w, o_w_free_held, S_free_held, held);
    }
    *cpu = 0;
    *held = -1;
    if (cell_get(job, o_j_pushed, S_pushed_ns, &pushed) < 0) return -1;
    if (free_ != pushed) return 0;
    PyObject *batch = cell_obj(job, o_j_batch);
    if (batch == NULL) return -1;
    int r = get_ll(batch, S_submitted_ns, &sub);
    if (r == 0 && free_ == sub) {
        r = get_ll(batch, S_submitted_cpu, cpu);
        if (r == 0) r = get_ll(batch, S_submitted_held, held);
    }
    Py_DECREF(batch);
    return r;
}

/* The hand-off's checks, with no side effect: 1 plain (at, pool, watch: new references), 0 the
 * Python path's (nothing set), -1 error. (A closed pool is found under its lock: pool_put.) */
static int hand_checks(PyObject *backend, PyObject **at_out, PyObject **pool_out,
                       PyObject **watch_out) {
    PyObject *watch = PyObject_GetAttr(backend, S__watch), *at = NULL, *loop = NULL;
    int r = 0;
    if (watch == NULL) return -1;
    if (watch == Py_None) goto out; /* the first traced body takes the watch (_watched) */
    if ((at = PyObject_GetAttr(backend, S__at)) == NULL) goto fail;
    if (!PyTuple_CheckExact(at) || PyTuple_GET_SIZE(at) != 6) goto out;
    if ((loop = PyObject_CallNoArgs(g_running_loop)) == NULL) goto fail;
    if (loop == Py_None || PyTuple_GET_ITEM(at, 0) != loop ||
        PyTuple_GET_ITEM(at, 3) == Py_None || !Py_IS_TYPE(PyTuple_GET_ITEM(at, 5), &ClockType))
        goto out; /* another loop or thread than the last (_handing), or trio */
    long long ident;
    if (to_ll(PyTuple_GET_ITEM(at, 1), &ident) < 0) goto fail;
    if ((unsigned long)ident != PyThread_get_thread_ident()) goto out;
    PyObject *pool = PyTuple_GET_ITEM(at, 2);
    int no_spawner = attr_is_none(pool, S__spawner);
    if (no_spawner != 0) { /* no spawner yet: the first job starts it (submit_to) */
        r = no_spawner < 0 ? -1 : 0;
        goto out;
    }
    *at_out = Py_NewRef(at);
    *pool_out = Py_NewRef(pool);
    *watch_out = Py_NewRef(watch);
    r = 1;
    goto out;
fail:
    r = -1;
out:
    Py_XDECREF(loop);
    Py_XDECREF(at);
    Py_DECREF(watch);
    return r;
}

/* DaemonPool.submit_to(deliver, ctx.run, *call), its lock held: queued (or held) and the
 * worker asked for; 0 done, 1 closed meanwhile (nothing queued), -1 error */
static int pool_put(PyObject *pool, PyObject *item) {
    PyObject *closed = PyObject_GetAttr(pool, S__closed);
    if (closed == NULL) return -1;
    int is_closed = PyObject_IsTrue(closed);
    Py_DECREF(closed);
    if (is_closed != 0) return is_closed < 0 ? -1 : 1;
    PyObject *held = PyObject_GetAttr(pool, S__held), *r;
    if (held == NULL) return -1;
    int bad;
    if (held == Py_None) {
        PyObject *q = PyObject_GetAttr(pool, S__q);
        r = q == NULL ? NULL : PyObject_CallMethodOneArg(q, S_put, item);
        Py_XDECREF(q);
        bad = drop(r);
    } else {
        bad = PyList_Append(held, item);
    }
    long long idle, grown;
    if (bad == 0) bad = get_ll(pool, S__idle, &idle);
    if (bad == 0 && idle > 0) {
        bad = set_ll(pool, S__idle, idle - 1);
    } else if (bad == 0 && held == Py_None) {
        PyObject *g = PyObject_GetAttr(pool, S__grow);
        r = g == NULL ? NULL : PyObject_CallMethodOneArg(g, S_put, Py_True);
        Py_XDECREF(g);
        bad = drop(r);
    } else if (bad == 0) {
        bad = get_ll(pool, S__held_grow, &grown);
        if (bad == 0) bad = set_ll(pool, S__held_grow, grown + 1);
    }
    Py_DECREF(held);
    return bad;
}

/* hand_plain(backend, w, job, free, into, resolution_ns, max_segments): the handle hand_sync
 * returns, or None for the Python path (see the top of this file) */
static PyObject *m_hand_plain(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t n) {
    if (n != 7 || g_probe_type == NULL) {
        PyErr_SetString(PyExc_TypeError, n != 7 ? "hand_plain() takes 7 arguments"
                                                : "hand_plain() before setup_hand()");
        return NULL;
    }
    PyObject *backend = args[0], *w = args[1], *job = args[2], *into = args[4];
    PyObject *at = NULL, *pool = NULL, *watch = NULL;
    int ok = hand_checks(backend, &at, &pool, &watch);
    if (ok <= 0) return ok < 0 ? NULL : Py_NewRef(Py_None);
    PyObject *probe = NULL, *ctx = NULL, *afut = NULL, *deliver = NULL, *handed = NULL,
             *fn = NULL, *fargs = NULL, *kwargs = NULL, *inner = NULL, *body = NULL,
             *call = NULL, *kw = NULL, *args5 = NULL, *run = NULL, *cond = NULL, *fut = NULL,
             *item = NULL, *lock = NULL, *running = NULL, *slot = NULL, *result = NULL;
    Clock *st = (Clock *)PyTuple_GET_ITEM(at, 5);
    long long free_, cpu, held, t, hand_cpu = 0;
    if (to_ll(args[3], &free_) < 0) goto done;
    /* hand_sync: the probe, its clocks at the slot's free time, the worker's context copied */
    if ((probe = new_probe(args[5], args[6], free_)) == NULL) goto done;
    if (clocks_at(w, job, free_, &cpu, &held) < 0 || set_ll(probe, S_free_cpu_ns, cpu) < 0 ||
        set_ll(probe, S_free_held, held) < 0)
        goto done;
    PyObject *wctx = CELL(w, o_w_ctx);
    ctx = wctx != NULL && wctx != Py_None ? PyContext_Copy(wctx) : PyContext_CopyCurrent();
    if (ctx == NULL) goto done;
    /* hand_off: the loop future and its delivery, the hand-off's time and clocks */
    afut = into != Py_None ? Py_NewRef(into)
                           : PyObject_CallMethodNoArgs(PyTuple_GET_ITEM(at, 0), S_create_future);
    if (afut == NULL) goto done;
    PyObject *pargs[2] = {PyTuple_GET_ITEM(at, 3), afut};
    if ((deliver = PyObject_Vectorcall(g_partial, pargs, 2, NULL)) == NULL) goto done;
    t = mono_ns();
    if ((handed = PyList_New(1)) == NULL) goto done;
    PyObject *tv = PyLong_FromLongLong(t);
    if (tv == NULL) goto done;
    PyList_SET_ITEM(handed, 0, tv);
    if (t - free_ >= g_lookup_min) hand_cpu = clock_cpu_at(st, t);
    PyObject *hh = Py_BuildValue("(LL)", st->held, st->held_end);
    if (hh == NULL || PyObject_SetAttr(probe, S_hand_held, hh) < 0) {
        Py_XDECREF(hh);
        goto done;
    }
    Py_DECREF(hh);
    /* _call: (_guarded, fn, run_sync_probed, (probe, pool.body, (fn, *args), kwargs, ...), {}) */
    if ((fn = cell_obj(job, o_j_fn)) == NULL || (fargs = cell_obj(job, o_j_args)) == NULL ||
        (kwargs = cell_obj(job, o_j_kwargs)) == NULL)
        goto done;
    if (!PyTuple_Check(fargs)) {
        PyErr_SetString(PyExc_TypeError, "a job's args must be a tuple");
        goto done;
    }
    Py_ssize_t na = PyTuple_GET_SIZE(fargs);
    if ((inner = PyTuple_New(na + 1)) == NULL) goto done;
    PyTuple_SET_ITEM(inner, 0, Py_NewRef(fn));
    for (Py_ssize_t i = 0; i < na; i++)
        PyTuple_SET_ITEM(inner, i + 1, Py_NewRef(PyTuple_GET_ITEM(fargs, i)));
    if ((body = PyObject_GetAttr(pool, S_body)) == NULL) goto done;
    call = PyTuple_Pack(9, probe, body, inner, kwargs, g_thread_time, watch, handed,
                        PyTuple_GET_ITEM(at, 4), (PyObject *)st);
    if (call == NULL || (kw = PyDict_New()) == NULL) goto done;
    if ((args5 = PyTuple_Pack(5, g_guarded, fn, g_run_probed, call, kw)) == NULL) goto done;
    /* submit_to: the pool's future, the item queued (or held) under the pool's lock */
    if ((run = PyObject_GetAttr(ctx, S_run)) == NULL) goto done;
    if ((cond = PyObject_GetAttr(pool, S_condition)) == NULL) goto done;
    if ((fut = PyObject_CallOneArg(g_pool_future, cond)) == NULL) goto done;
    if ((item = PyTuple_Pack(4, fut, run, args5, deliver)) == NULL) goto done;
    if ((lock = PyObject_GetAttr(pool, S__lock)) == NULL) goto done;
    if (drop(PyObject_CallMethodNoArgs(lock, S_acquire)) < 0) goto done;
    int put = pool_put(pool, item);
    PyObject *et, *ev, *etb;
    PyErr_Fetch(&et, &ev, &etb); /* (released whatever happened: as ``with self._lock``) */
    int unlocked = drop(PyObject_CallMethodNoArgs(lock, S_release));
    if (put < 0) {
        if (unlocked < 0) PyErr_Clear();
        PyErr_Restore(et, ev, etb);
        goto done;
    }
    if (unlocked < 0) goto done;
    if (put == 1) { /* closed since the check: the Python path raises submit_to's error */
        result = Py_NewRef(Py_None);
        goto done;
    }
    /* hand_off: the slot's future, and its handle */
    if ((running = PyObject_GetAttr(backend, S__running)) == NULL ||
        (slot = cell_obj(w, o_w_slot)) == NULL || PyObject_SetItem(running, slot, fut) < 0)
        goto done;
    result = Py_BuildValue("(OOOLOL)", fut, afut, probe, free_, handed, hand_cpu);
done:
    Py_XDECREF(at);
    Py_XDECREF(pool);
    Py_XDECREF(watch);
    Py_XDECREF(probe);
    Py_XDECREF(ctx);
    Py_XDECREF(afut);
    Py_XDECREF(deliver);
    Py_XDECREF(handed);
    Py_XDECREF(fn);
    Py_XDECREF(fargs);
    Py_XDECREF(kwargs);
    Py_XDECREF(inner);
    Py_XDECREF(body);
    Py_XDECREF(call);
    Py_XDECREF(kw);
    Py_XDECREF(args5);
    Py_XDECREF(run);
    Py_XDECREF(cond);
    Py_XDECREF(fut);
    Py_XDECREF(item);
    Py_XDECREF(lock);
    Py_XDECREF(running);
    Py_XDECREF(slot);
    return result;
}
