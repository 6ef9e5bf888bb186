/* The core sampler's two /proc reads in C: /proc/stat's per-core (busy, total) jiffies and a
 * process's user + system CPU seconds from its stat file (Sampler._read_cores, _procread's
 * stat_cpu_s over Reader.read).
 *
 * Why: the executor's loop takes the sampler's ticks while batches run (Sampler.loop_tick), so
 * a tick is loop time every task waits behind. In Python a tick cost 45 µs on an idle machine
 * and 150-200 µs beside a busy loopback server (the reads through ctypes, and splitting and
 * int()-ing /proc/stat's text, on cold caches); the read itself is ~8 µs.
 *
 * The GIL is kept, as _procread's libc calls keep it (os.pread gives it up, and a sampler that
 * gave it up could wait a switch interval to get it back). The Python parsers stay the
 * reference and the path where this module is not built; tests/test_procread.py holds the two
 * equal on real and made-up files. Included by _stepc.c. */

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* /proc/stat of a few hundred cores fits; the interrupt lines after the cpu lines are not read */
#define PROC_BUF 65536
static char *g_proc_buf = NULL;

/* pread of fd from offset 0 into the shared buffer, NUL-terminated: the length, or -1 */
static ssize_t proc_read(long long fd) {
    if (g_proc_buf == NULL && (g_proc_buf = malloc(PROC_BUF + 1)) == NULL) {
        PyErr_NoMemory();
        return -2;
    }
    ssize_t got = pread((int)fd, g_proc_buf, PROC_BUF, 0);
    if (got < 0) return -1;
    g_proc_buf[got] = '\0';
    return got;
}

/* proc_cores(fd): [(busy, total), ...] per core ("cpuN" lines: busy = total - idle - iowait,
 * total the sum of the first eight fields, as guest time is inside user and nice), None when
 * the read failed, [] when it found no core line */
static PyObject *m_proc_cores(PyObject *Py_UNUSED(m), PyObject *arg) {
    long long fd;
    if (to_ll(arg, &fd) < 0) return NULL;
    ssize_t got = proc_read(fd);
    if (got == -2) return NULL;
    if (got < 0) Py_RETURN_NONE;
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    char *p = g_proc_buf;
    while (*p) {
        char *eol = strchr(p, '\n');
        char *next = eol ? eol + 1 : p + strlen(p);
        if (strncmp(p, "cpu", 3) == 0 && p[3] >= '0' && p[3] <= '9') {
            long long v[8] = {0};
            char *q = p + 3, *end;
            while (*q >= '0' && *q <= '9') q++; /* the core's number */
            for (int i = 0; i < 8; i++) {
                while (*q == ' ') q++;
                if (*q < '0' || *q > '9') break; /* (an older kernel: fewer fields) */
                errno = 0;
                v[i] = strtoll(q, &end, 10);
                if (errno != 0) {
                    Py_DECREF(out);
                    PyErr_SetString(PyExc_ValueError, "/proc/stat: a counter out of range");
                    return NULL;
                }
                q = end;
            }
            long long total = 0;
            for (int i = 0; i < 8; i++) total += v[i];
            PyObject *pair = Py_BuildValue("(LL)", total - v[3] - v[4], total);
            if (pair == NULL || PyList_Append(out, pair) < 0) {
                Py_XDECREF(pair);
                Py_DECREF(out);
                return NULL;
            }
            Py_DECREF(pair);
        } else if (PyList_GET_SIZE(out) > 0) {
            break; /* past the core lines */
        }
        p = next;
    }
    return out;
}

/* proc_stat_cpu(fd, ticks_per_s): user + system CPU seconds of a process from its
 * /proc/<pid>/stat (fields 14 and 15, after the command name, which may itself hold spaces
 * and parentheses: counted from the last ')'), None when the read failed (it has gone) */
static PyObject *m_proc_stat_cpu(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t n) {
    long long fd, tick;
    if (n != 2) {
        PyErr_SetString(PyExc_TypeError, "proc_stat_cpu() takes 2 arguments");
        return NULL;
    }
    if (to_ll(args[0], &fd) < 0 || to_ll(args[1], &tick) < 0) return NULL;
    ssize_t got = proc_read(fd);
    if (got == -2) return NULL;
    if (got < 0) Py_RETURN_NONE;
    char *q = strrchr(g_proc_buf, ')'), *end;
    long long f[13];
    int i = 0;
    if (q != NULL) {
        q++;
        for (; i < 13; i++) { /* state, ppid, ..., utime (11), stime (12) */
            while (*q == ' ') q++;
            if (!*q || *q == '\n') break;
            if (i == 0) { /* the state: one letter */
                while (*q && *q != ' ' && *q != '\n') q++;
                f[0] = 0;
                continue;
            }
            errno = 0;
            f[i] = strtoll(q, &end, 10);
            if (end == q || errno != 0) break;
            q = end;
        }
    }
    if (i < 13 || tick <= 0) {
        PyErr_SetString(PyExc_ValueError, "/proc/<pid>/stat: no utime and stime fields");
        return NULL;
    }
    return PyFloat_FromDouble((double)(f[11] + f[12]) / (double)tick);
}
