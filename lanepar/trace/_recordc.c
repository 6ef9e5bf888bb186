/* A plain traced task's record, packed in C: lanepar.run._settle.settle_plain, statement for
 * statement, for the case nearly every traced task is (it returned, and its probe notes
 * nothing beyond its times and segments). A body of one segment is settle_plain's own case; a
 * body of several (an async tool that waited on real I/O: cpu, wait, ...) is the record
 * settle_plain hands to the general lanepar.run._settle.settle, made here as that makes it.
 *
 * Why C: settling is per task, and in Python (a struct pack of 17 values, a record made by
 * __new__ and five slot stores, the recorder's add, the batch's slot) it cost ~2 us of the
 * loop thread's CPU a task in a 20 000-task batch at 16 awaits a task (benchmarks/
 * overhead.py), half of what tracing added there. Every other case (a live view's running
 * entry aside, which is taken out here too) calls the Python function, which stays the
 * reference: tests hold this one to it record for record.
 *
 * Included by _stepc.c (one extension module: one build, one import); it uses the step
 * driver's int and slot helpers (to_ll, cell_get, cell_set, set_ll) and interned names.
 */

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the packed record is little-endian; elsewhere the Python settle_plain is used"
#endif

/* what lanepar.run._settle hands over once (setup_settle) */
static PyObject *g_settle_py, *g_record_type, *S_ok, *S_running, *S_args_summary, *S_add,
    *S_records, *S_end_ns, *S_id, *S_submitted_ns, *S_gil_ns, *S_lock_ns, *S_runq_ns;
/* slot offsets: the probe's, the job's and the record's (TaskProbe, Job, TaskRecord) */
static Py_ssize_t o_p_start, o_p_end, o_p_cpu, o_p_wait, o_segs, o_started, o_finished, o_cpu,
    o_wait, o_j_id, o_j_sub, o_j_name, o_j_batch, o_j_index, o_r_p, o_r_o, o_r_lane, o_r_name,
    o_maxseg;

#define CELL(o, off) (*(PyObject **)((char *)(o) + (off)))
#define KIND_CPU 2 /* layout.json's segment_kinds: queued, dispatch, cpu, wait, gil, runq */
#define KIND_WAIT 3
#define HEAD_SIZE 80
#define SEG_SIZE 9

static Py_ssize_t type_slot_offset(PyObject *type, const char *name) {
    PyObject *d = PyObject_GetAttrString(type, name);
    if (d == NULL) return -1;
    Py_ssize_t off = -1;
    if (Py_IS_TYPE(d, &PyMemberDescr_Type) &&
        ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX &&
        !(((PyMemberDescrObject *)d)->d_member->flags & READONLY))
        off = ((PyMemberDescrObject *)d)->d_member->offset;
    Py_DECREF(d);
    if (off < 0) PyErr_Format(PyExc_TypeError, "%R.%s is not a __slots__ slot", type, name);
    return off;
}

/* the __slots__ offsets a setup_* call looks up once: (where to put it, the type, the name) */
typedef struct {
    Py_ssize_t *at;
    PyObject *type;
    const char *name;
} SlotSpec;

static int find_slots(const SlotSpec *specs, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((*specs[i].at = type_slot_offset(specs[i].type, specs[i].name)) < 0) return -1;
    return 0;
}

static void put_i64(char *at, long long v) { memcpy(at, &v, 8); }

static PyObject *m_setup_settle(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t n) {
    if (n != 4) {
        PyErr_SetString(PyExc_TypeError,
                        "setup_settle(settle_plain, TaskProbe, Job, TaskRecord) takes 4 arguments");
        return NULL;
    }
    PyObject *probe_t = args[1], *job_t = args[2], *rec_t = args[3];
    if (!PyType_Check(rec_t)) {
        PyErr_SetString(PyExc_TypeError, "setup_settle: TaskRecord must be a type");
        return NULL;
    }
    SlotSpec slots[] = {
        {&o_p_start, probe_t, "p_start"},   {&o_p_end, probe_t, "p_end"},
        {&o_p_cpu, probe_t, "p_cpu"},       {&o_p_wait, probe_t, "p_wait"},
        {&o_segs, probe_t, "segs"},         {&o_started, probe_t, "started_ns"},
        {&o_finished, probe_t, "finished_ns"}, {&o_cpu, probe_t, "cpu_ns"},
        {&o_wait, probe_t, "wait_ns"},      {&o_j_id, job_t, "id"},
        {&o_j_sub, job_t, "submitted_ns"},  {&o_j_name, job_t, "name"},
        {&o_j_batch, job_t, "batch"},       {&o_j_index, job_t, "index"},
        {&o_r_p, rec_t, "_p"},              {&o_r_o, rec_t, "_o"},
        {&o_r_lane, rec_t, "lane"},         {&o_r_name, rec_t, "name"},
        {&o_maxseg, probe_t, "max_segments"},
    };
    if (find_slots(slots, sizeof slots / sizeof slots[0]) < 0) return NULL;
    Py_XSETREF(g_settle_py, Py_NewRef(args[0]));
    Py_XSETREF(g_record_type, Py_NewRef(rec_t));
    Py_RETURN_NONE;
}

/* (kind, end) of a [kind, start, end] segment of ints that struct.pack takes (kind a byte, end
 * an int64): 1, or 0 for any other shape (no error set: the Python path raises its own) */
static int seg_vals(PyObject *seg, long long *kind, long long *end) {
    if (!PyList_CheckExact(seg) || PyList_GET_SIZE(seg) != 3) return 0;
    PyObject *k = PyList_GET_ITEM(seg, 0), *e = PyList_GET_ITEM(seg, 2);
    if (!PyLong_CheckExact(k) || !PyLong_CheckExact(e) || !PyLong_CheckExact(PyList_GET_ITEM(seg, 1)))
        return 0;
    int of1, of2;
    *kind = PyLong_AsLongLongAndOverflow(k, &of1);
    *end = PyLong_AsLongLongAndOverflow(e, &of2);
    return !of1 && !of2 && *kind >= 0 && *kind <= 255;
}

/* TaskProbe.finish() of a probe whose __dict__ holds no GIL / run-queue part of its pending run
 * (see contention): 1 done (the probe closed as finish() closes it), 0 not that case (nothing
 * touched: a segment of another shape, or a run whose drawing would coarsen), -1 error */
static int finish_plain(PyObject *probe, PyObject *segs) {
    long long p_start, p_end, p_cpu, p_wait, kind, last_end = 0, most;
    Py_ssize_t n = PyList_GET_SIZE(segs);
    for (Py_ssize_t i = 0; i < n; i++) /* every segment packable, before anything is touched */
        if (!seg_vals(PyList_GET_ITEM(segs, i), &kind, &last_end)) return 0;
    if (cell_get(probe, o_p_start, S_p_start, &p_start) < 0) return -1;
    if (p_start < 0) return 1;
    if (cell_get(probe, o_p_end, S_p_end, &p_end) < 0 ||
        cell_get(probe, o_p_cpu, S_p_cpu, &p_cpu) < 0 ||
        cell_get(probe, o_p_wait, S_p_wait, &p_wait) < 0)
        return -1;
    if (n > 0 && last_end >= p_start) { /* _close_pending: the neighbour takes the run */
        PyObject *end = PyLong_FromLongLong(p_end);
        if (end == NULL) return -1;
        PyList_SetItem(PyList_GET_ITEM(segs, n - 1), 2, end); /* (steals end) */
    } else if (p_end > p_start) { /* _flush: the run as the kind that dominated it */
        /* (_emit: a gap after the last segment goes to the new piece; the list at the
         * segment budget is coarsened, which the Python path does) */
        if (cell_get(probe, o_maxseg, S_max_segments, &most) < 0) return -1;
        if (n + 1 >= most) return 0;
        PyObject *seg = Py_BuildValue("[iLL]", p_cpu >= p_wait ? KIND_CPU : KIND_WAIT,
                                      n > 0 ? last_end : p_start, p_end);
        if (seg == NULL) return -1;
        int bad = PyList_Append(segs, seg);
        Py_DECREF(seg);
        if (bad < 0) return -1;
    }
    return (cell_set(probe, o_p_start, S_p_start, -1) < 0 ||
            cell_set(probe, o_p_end, S_p_end, -1) < 0 || cell_set(probe, o_p_cpu, S_p_cpu, 0) < 0 ||
            cell_set(probe, o_p_wait, S_p_wait, 0) < 0)
               ? -1
               : 1;
}

/* A late start's contention (TaskProbe.prepend_contention) in the probe's __dict__, the only
 * thing a plain probe's may hold (lanepar.run._settle.CONTENTION): 1 and its values (0 where
 * absent), 0 for a __dict__ with anything else (the Python path), -1 error */
static int contention(PyObject *probe, long long *gil, long long *lock, long long *runq) {
    *gil = *lock = *runq = 0;
    PyObject **dp = _PyObject_GetDictPtr(probe);
    if (dp == NULL || *dp == NULL || PyDict_GET_SIZE(*dp) == 0) return 1;
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(*dp, &pos, &key, &value)) {
        long long *at = key == S_gil_ns ? gil : key == S_lock_ns ? lock : key == S_runq_ns ? runq
                                                                                          : NULL;
        if (at == NULL || !PyLong_CheckExact(value)) return 0; /* (a key not interned: Python) */
        int overflow;
        *at = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow) return 0;
    }
    return 1;
}

/* probe_plain(probe): lanepar.run._settle.plain, without making the __dict__ it looks at: in
 * Python, reading probe.__dict__ makes an empty one for a probe that has none (every plain
 * probe), an allocation and a free a traced task */
static PyObject *m_probe_plain(PyObject *Py_UNUSED(m), PyObject *probe) {
    long long gil, lock, runq;
    int r = contention(probe, &gil, &lock, &runq);
    if (r < 0) return NULL;
    return PyBool_FromLong(r);
}

/* the batch's slot for the record, and its last finish (batch.records / batch.end_ns) */
static int into_batch(PyObject *job, PyObject *rec, long long finished) {
    PyObject *batch = CELL(job, o_j_batch), *index = CELL(job, o_j_index);
    if (batch == NULL || index == NULL) {
        PyErr_SetString(PyExc_AttributeError, "the job has no batch or index");
        return -1;
    }
    PyObject *records = PyObject_GetAttr(batch, S_records);
    if (records == NULL) return -1;
    int untraced = records == Py_None; /* (a batch that keeps no records) */
    int bad = !untraced && PyObject_SetItem(records, index, rec) < 0;
    Py_DECREF(records);
    if (bad || untraced) return bad ? -1 : 0;
    long long end;
    PyObject *v = PyObject_GetAttr(batch, S_end_ns);
    if (v == NULL) return -1;
    bad = to_ll(v, &end);
    Py_DECREF(v);
    if (bad < 0) return -1;
    return finished > end ? set_ll(batch, S_end_ns, finished) : 0;
}

/* settle_plain(lane, recorder, job, slot, free, probe) */
static PyObject *m_settle_plain(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t n) {
    if (n != 6 || g_settle_py == NULL) {
        PyErr_SetString(PyExc_TypeError, n != 6 ? "settle_plain() takes 6 arguments"
                                                : "settle_plain() before setup_settle()");
        return NULL;
    }
    PyObject *lane = args[0], *recorder = args[1], *job = args[2], *probe = args[5];
    long long slot, free_, started, finished, cpu, wait, id, sub, kind, end;
    /* a live view's "running now" entry goes first, as in Python */
    PyObject *running = PyObject_GetAttr(recorder, S_running);
    if (running == NULL) return NULL;
    if (!PyDict_CheckExact(running)) {
        Py_DECREF(running);
        goto python;
    }
    if (PyDict_GET_SIZE(running)) {
        PyObject *id_obj = CELL(job, o_j_id);
        if (id_obj != NULL && PyDict_GetItemWithError(running, id_obj) != NULL &&
            PyDict_DelItem(running, id_obj) < 0) {
            Py_DECREF(running);
            return NULL;
        }
        if (PyErr_Occurred()) {
            Py_DECREF(running);
            return NULL;
        }
    }
    Py_DECREF(running);
    PyObject *segs = CELL(probe, o_segs);
    if (segs == NULL || !PyList_CheckExact(segs)) goto python;
    long long gil, lock, runq;
    int plain = contention(probe, &gil, &lock, &runq);
    if (plain > 0) plain = finish_plain(probe, segs);
    if (plain < 0) return NULL;
    if (!plain) goto python;
    Py_ssize_t n_body = PyList_GET_SIZE(segs);
    if (to_ll(args[3], &slot) < 0 || to_ll(args[4], &free_) < 0 ||
        cell_get(probe, o_started, S_started_ns, &started) < 0 ||
        cell_get(probe, o_finished, S_finished_ns, &finished) < 0 ||
        cell_get(probe, o_cpu, S_cpu_ns, &cpu) < 0 || cell_get(probe, o_wait, S_wait_ns, &wait) < 0 ||
        cell_get(job, o_j_id, S_id, &id) < 0 || cell_get(job, o_j_sub, S_submitted_ns, &sub) < 0)
        return NULL;
    /* values struct.pack would refuse: Python raises its error */
    if (slot < INT32_MIN || slot > INT32_MAX || CELL(job, o_j_name) == NULL) goto python;
    for (Py_ssize_t i = 0; i < n_body; i++) { /* (an end offset beyond int64) */
        seg_vals(PyList_GET_ITEM(segs, i), &kind, &end);
        long long off;
        if (__builtin_sub_overflow(end, sub, &off)) goto python;
    }
    if (!started) started = free_;
    if (!finished) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        finished = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    }
    if (started < free_) free_ = started;
    PyObject *summary = PyObject_GetAttr(job, S_args_summary), *text = NULL;
    if (summary == NULL) return NULL;
    if (PyUnicode_Check(summary) && PyUnicode_GET_LENGTH(summary)) {
        text = PyUnicode_AsEncodedString(summary, "utf-8", "replace");
        if (text == NULL) {
            Py_DECREF(summary);
            return NULL;
        }
    } else if (!PyUnicode_Check(summary) && PyObject_IsTrue(summary)) {
        Py_DECREF(summary);
        goto python; /* (not a str: Python's .encode raises) */
    }
    Py_DECREF(summary);
    Py_ssize_t text_len = text ? PyBytes_GET_SIZE(text) : 0;
    Py_ssize_t n_segs = n_body + (free_ > sub) + (started > free_);
    PyObject *packed = PyBytes_FromStringAndSize(NULL, HEAD_SIZE + SEG_SIZE * n_segs + text_len);
    if (packed == NULL) {
        Py_XDECREF(text);
        return NULL;
    }
    char *b = PyBytes_AS_STRING(packed);
    long long head[9] = {id, sub, free_, started, finished, cpu, wait, gil, runq};
    for (int i = 0; i < 9; i++) put_i64(b + 8 * i, head[i]);
    int32_t slot32 = (int32_t)slot;
    uint32_t n32 = (uint32_t)n_segs;
    memcpy(b + 72, &slot32, 4);
    memcpy(b + 76, &n32, 4);
    char *at = b + HEAD_SIZE;
    if (free_ > sub) { /* queued: submitted -> slot free */
        *at = 0;
        put_i64(at + 1, free_ - sub);
        at += SEG_SIZE;
    }
    if (started > free_) { /* dispatch: slot free -> body start */
        *at = 1;
        put_i64(at + 1, started - sub);
        at += SEG_SIZE;
    }
    for (Py_ssize_t i = 0; i < n_body; i++) { /* the body's segments: kind, end offset */
        seg_vals(PyList_GET_ITEM(segs, i), &kind, &end); /* (checked by finish_plain) */
        *at = (char)kind;
        put_i64(at + 1, end - sub);
        at += SEG_SIZE;
    }
    if (text_len) memcpy(at, PyBytes_AS_STRING(text), text_len);
    Py_XDECREF(text);
    /* TaskRecord.from_packed(lane, job.name, "ok", packed, extra) */
    PyTypeObject *rt = (PyTypeObject *)g_record_type;
    /* the outcome slot: "ok", or ("ok", extra) with settle's extra, the part of the GIL wait
     * spent on another lock, if any (TaskRecord._o) */
    PyObject *outcome = lock ? Py_BuildValue("(O{sL})", S_ok, "lock_ns", lock) : Py_NewRef(S_ok);
    PyObject *rec = outcome == NULL ? NULL : rt->tp_alloc(rt, 0);
    if (rec == NULL) {
        Py_XDECREF(outcome);
        Py_DECREF(packed);
        return NULL;
    }
    CELL(rec, o_r_p) = packed;
    CELL(rec, o_r_o) = outcome;
    CELL(rec, o_r_lane) = Py_NewRef(lane);
    CELL(rec, o_r_name) = Py_NewRef(CELL(job, o_j_name));
    PyObject *added = PyObject_CallMethodOneArg(recorder, S_add, rec);
    int bad = added == NULL || into_batch(job, rec, finished) < 0;
    Py_XDECREF(added);
    Py_DECREF(rec);
    if (bad) return NULL;
    Py_RETURN_NONE;
python:
    return PyObject_Vectorcall(g_settle_py, args, n, NULL);
}

/* untrack(record): a record the recorder keeps, out of the cyclic GC's lists. A record holds
 * only strings, bytes and at most an (outcome, extra) tuple, so it can close no cycle; tracked,
 * each of a long-lived recorder's records was visited by every full collection (96,000 kept
 * records made one take 32-35 ms instead of 8-10). Anything but a TaskRecord (the type
 * setup_settle gave; none yet: nothing) is left as it is. */
static PyObject *m_untrack(PyObject *Py_UNUSED(m), PyObject *rec) {
    if (g_record_type != NULL && Py_IS_TYPE(rec, (PyTypeObject *)g_record_type))
        PyObject_GC_UnTrack(rec);
    Py_RETURN_NONE;
}

static int settle_intern(void) {
    return (S_ok = PyUnicode_InternFromString("ok")) == NULL ||
                   (S_running = PyUnicode_InternFromString("running")) == NULL ||
                   (S_args_summary = PyUnicode_InternFromString("args_summary")) == NULL ||
                   (S_add = PyUnicode_InternFromString("add")) == NULL ||
                   (S_records = PyUnicode_InternFromString("records")) == NULL ||
                   (S_end_ns = PyUnicode_InternFromString("end_ns")) == NULL ||
                   (S_id = PyUnicode_InternFromString("id")) == NULL ||
                   (S_submitted_ns = PyUnicode_InternFromString("submitted_ns")) == NULL ||
                   (S_gil_ns = PyUnicode_InternFromString("gil_ns")) == NULL ||
                   (S_lock_ns = PyUnicode_InternFromString("lock_ns")) == NULL ||
                   (S_runq_ns = PyUnicode_InternFromString("runq_ns")) == NULL
               ? -1
               : 0;
}
