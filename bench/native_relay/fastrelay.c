/* A stream's per-token relay in C: a measuring device for issue 13 (bench/ablation_build.py's
 * ``native`` variant), not gateway code.
 *
 * What it does is what the gateway's Python does for a followed stream's read from the engine
 * (``_Connection.data_received`` -> llhttp -> ``_Relay.fast`` -> ``whole_events`` ->
 * ``Responder.write_now`` -> ``_TextClock.sent``), for the common read only: one or more whole
 * chunks of the engine's chunked body, each of whole SSE events, none of them the usage chunk, an
 * error event or the end. Such a read is written to the client's socket as it came (the engine's
 * chunk framing is the client's), its token-carrying deltas counted as ``sse.text_count`` counts
 * them, the inter-token gaps kept as ``_TextClock`` keeps them, the write deadline checked as
 * ``_Relay.fast`` checks it. Anything else returns False and the Python path takes the read.
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#include <time.h>

typedef struct {
    PyObject_HEAD
    PyObject *write;      /* the client transport's write */
    PyObject *loop_time;  /* the event loop's time */
    PyObject *flow;       /* uvicorn's flow control (write_paused) */
    PyObject *cycle;      /* uvicorn's request-response cycle (disconnected) */
    PyObject *relay;      /* the _Relay: write_check, read_check, after_read */
    PyObject *ex;         /* the Exchange: texts_sent */
    PyObject *clock;      /* the _TextClock: _last, _gaps, _itl */
    Py_ssize_t flush_every;
} Follower;

static PyObject *s_write_paused, *s_disconnected, *s_write_check, *s_read_check, *s_after_read,
    *s_texts_sent, *s_last, *s_gaps, *s_itl, *s_observe, *s_observe_all, *s_sent;

static Py_ssize_t count(const char *p, Py_ssize_t n, const char *needle, size_t k) {
    Py_ssize_t c = 0;
    const char *end = p + n;
    while (p < end) {
        const char *hit = memmem(p, (size_t)(end - p), needle, k);
        if (hit == NULL)
            break;
        c++;
        p = hit + k;
    }
    return c;
}

#define LIT(s) s, sizeof(s) - 1

/* sse.whole_events for one chunk's payload: its text count, or -1. */
static Py_ssize_t whole_events(const char *p, Py_ssize_t n) {
    if (n < 2 || p[n - 2] != '\n' || p[n - 1] != '\n' || memchr(p, '\r', (size_t)n) != NULL ||
        memmem(p, (size_t)n, LIT("\"usage\":{")) != NULL || memmem(p, (size_t)n, LIT("data: [DONE]")) != NULL ||
        memmem(p, (size_t)n, LIT("data: {\"error\"")) != NULL)
        return -1;
    Py_ssize_t c = count(p, n, LIT("\"delta\":{\""));
    if (c)
        c -= count(p, n, LIT("\"delta\":{\"role\""));
    Py_ssize_t t = count(p, n, LIT("\"text\":\""));
    if (t)
        c += t - count(p, n, LIT("\"text\":\"\""));
    return c;
}

/* Whole chunks, each whole events: their text count, or -1. */
static Py_ssize_t whole_chunks(const char *p, Py_ssize_t n) {
    Py_ssize_t pos = 0, texts = 0;
    while (pos < n) {
        Py_ssize_t size = 0;
        int digits = 0;
        for (; pos < n; pos++) {
            char ch = p[pos];
            int v = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                  : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
            if (v < 0)
                break;
            if (++digits > 7)
                return -1;
            size = size * 16 + v;
        }
        if (!digits || size == 0 || pos + 2 + size + 2 > n || p[pos] != '\r' || p[pos + 1] != '\n')
            return -1;
        pos += 2;
        if (p[pos + size] != '\r' || p[pos + size + 1] != '\n')
            return -1;
        Py_ssize_t t = whole_events(p + pos, size);
        if (t < 0)
            return -1;
        texts += t;
        pos += size + 2;
    }
    return texts;
}

static int attr_double(PyObject *o, PyObject *name, double *out) {
    PyObject *v = PyObject_GetAttr(o, name);
    if (v == NULL)
        return -1;
    *out = PyFloat_AsDouble(v);
    Py_DECREF(v);
    return *out == -1.0 && PyErr_Occurred() ? -1 : 0;
}

static int attr_true(PyObject *o, PyObject *name) {
    PyObject *v = PyObject_GetAttr(o, name);
    if (v == NULL)
        return -1;
    int r = PyObject_IsTrue(v);
    Py_DECREF(v);
    return r;
}

/* _TextClock.sent(texts) once the stream's first token has been timed (else the Python method). */
static int clock_sent(Follower *self, Py_ssize_t texts) {
    PyObject *last = PyObject_GetAttr(self->clock, s_last);
    if (last == NULL)
        return -1;
    if (last == Py_None) {
        Py_DECREF(last);
        PyObject *count = PyLong_FromSsize_t(texts);
        PyObject *r = count ? PyObject_CallMethodObjArgs(self->clock, s_sent, count, NULL) : NULL;
        Py_XDECREF(count);
        Py_XDECREF(r);
        return r == NULL ? -1 : 0;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* time.perf_counter's clock on Linux */
    double now = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    double before = PyFloat_AsDouble(last);
    Py_DECREF(last);
    PyObject *nowf = PyFloat_FromDouble(now);
    PyObject *gap = PyFloat_FromDouble(now - before);
    PyObject *gaps = PyObject_GetAttr(self->clock, s_gaps);
    int rc = -1;
    if (nowf && gap && gaps && PyObject_SetAttr(self->clock, s_last, nowf) == 0 && PyList_Append(gaps, gap) == 0) {
        rc = 0;
        if (PyList_GET_SIZE(gaps) >= self->flush_every || texts > 1) {
            PyObject *itl = PyObject_GetAttr(self->clock, s_itl);
            PyObject *r = NULL;
            if (itl != NULL && PyList_GET_SIZE(gaps) >= self->flush_every) {
                r = PyObject_CallMethodObjArgs(itl, s_observe_all, gaps, NULL);
                if (r != NULL)
                    rc = PyList_SetSlice(gaps, 0, PyList_GET_SIZE(gaps), NULL);
                else
                    rc = -1;
                Py_XDECREF(r);
            }
            if (rc == 0 && itl != NULL && texts > 1) {
                PyObject *zero = PyFloat_FromDouble(0.0), *times = PyLong_FromSsize_t(texts - 1);
                r = zero && times ? PyObject_CallMethodObjArgs(itl, s_observe, zero, times, NULL) : NULL;
                rc = r == NULL ? -1 : 0;
                Py_XDECREF(r);
                Py_XDECREF(zero);
                Py_XDECREF(times);
            }
            if (itl == NULL)
                rc = -1;
            Py_XDECREF(itl);
        }
    }
    Py_XDECREF(nowf);
    Py_XDECREF(gap);
    Py_XDECREF(gaps);
    return rc;
}

/* feed(data) -> bool: relayed, or declined (nothing done: the Python path takes ``data``). */
static PyObject *Follower_feed(Follower *self, PyObject *data) {
    char *p;
    Py_ssize_t n;
    if (PyBytes_AsStringAndSize(data, &p, &n) < 0)
        return NULL;
    Py_ssize_t texts = whole_chunks(p, n);
    if (texts < 0)
        Py_RETURN_FALSE;
    PyObject *t = PyObject_CallNoArgs(self->loop_time);
    if (t == NULL)
        return NULL;
    double now = PyFloat_AsDouble(t), write_check, read_check;
    if (attr_double(self->relay, s_write_check, &write_check) < 0) {
        Py_DECREF(t);
        return NULL;
    }
    int paused = attr_true(self->flow, s_write_paused), gone = attr_true(self->cycle, s_disconnected);
    if (now >= write_check || paused != 0 || gone != 0) {
        Py_DECREF(t);
        if (paused < 0 || gone < 0)
            return NULL;
        Py_RETURN_FALSE;
    }
    PyObject *r = PyObject_CallOneArg(self->write, data);
    if (r == NULL) {
        Py_DECREF(t);
        return NULL;
    }
    Py_DECREF(r);
    if (texts) {
        PyObject *sent = PyObject_GetAttr(self->ex, s_texts_sent), *sum = NULL;
        if (sent != NULL) {
            PyObject *add = PyLong_FromSsize_t(texts);
            sum = add ? PyNumber_Add(sent, add) : NULL;
            Py_XDECREF(add);
            Py_DECREF(sent);
        }
        if (sum == NULL || PyObject_SetAttr(self->ex, s_texts_sent, sum) < 0 || clock_sent(self, texts) < 0) {
            Py_XDECREF(sum);
            Py_DECREF(t);
            return NULL;
        }
        Py_DECREF(sum);
    }
    if (attr_double(self->relay, s_read_check, &read_check) < 0) {
        Py_DECREF(t);
        return NULL;
    }
    if (now >= read_check) {
        r = PyObject_CallMethodObjArgs(self->relay, s_after_read, t, NULL);
        Py_DECREF(t);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
    } else {
        Py_DECREF(t);
    }
    Py_RETURN_TRUE;
}

static int Follower_init(Follower *self, PyObject *args, PyObject *kwds) {
    PyObject *write, *loop_time, *flow, *cycle, *relay, *ex, *clock;
    if (!PyArg_ParseTuple(args, "OOOOOOOn", &write, &loop_time, &flow, &cycle, &relay, &ex, &clock, &self->flush_every))
        return -1;
    Py_INCREF(write), Py_INCREF(loop_time), Py_INCREF(flow), Py_INCREF(cycle), Py_INCREF(relay), Py_INCREF(ex),
        Py_INCREF(clock);
    Py_XSETREF(self->write, write);
    Py_XSETREF(self->loop_time, loop_time);
    Py_XSETREF(self->flow, flow);
    Py_XSETREF(self->cycle, cycle);
    Py_XSETREF(self->relay, relay);
    Py_XSETREF(self->ex, ex);
    Py_XSETREF(self->clock, clock);
    return 0;
}

static void Follower_dealloc(Follower *self) {
    Py_XDECREF(self->write);
    Py_XDECREF(self->loop_time);
    Py_XDECREF(self->flow);
    Py_XDECREF(self->cycle);
    Py_XDECREF(self->relay);
    Py_XDECREF(self->ex);
    Py_XDECREF(self->clock);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *py_whole_chunks(PyObject *mod, PyObject *data) {
    char *p;
    Py_ssize_t n;
    if (PyBytes_AsStringAndSize(data, &p, &n) < 0)
        return NULL;
    return PyLong_FromSsize_t(whole_chunks(p, n));
}

static PyMethodDef Follower_methods[] = {
    {"feed", (PyCFunction)Follower_feed, METH_O, "Relay a read from the engine, or decline it."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject FollowerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "_fastrelay.Follower",
    .tp_basicsize = sizeof(Follower),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Follower_init,
    .tp_dealloc = (destructor)Follower_dealloc,
    .tp_methods = Follower_methods,
};

static PyMethodDef module_methods[] = {
    {"whole_chunks", py_whole_chunks, METH_O, "Text count of a read of whole chunks of whole events, or -1."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastrelay", NULL, -1, module_methods};

PyMODINIT_FUNC PyInit__fastrelay(void) {
#define INTERN(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL
    INTERN(s_write_paused, "write_paused");
    INTERN(s_disconnected, "disconnected");
    INTERN(s_write_check, "write_check");
    INTERN(s_read_check, "read_check");
    INTERN(s_after_read, "after_read");
    INTERN(s_texts_sent, "texts_sent");
    INTERN(s_last, "_last");
    INTERN(s_gaps, "_gaps");
    INTERN(s_itl, "_itl");
    INTERN(s_observe, "observe");
    INTERN(s_observe_all, "observe_all");
    INTERN(s_sent, "sent");
    if (PyType_Ready(&FollowerType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&FollowerType);
    if (PyModule_AddObject(m, "Follower", (PyObject *)&FollowerType) < 0) {
        Py_DECREF(&FollowerType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
