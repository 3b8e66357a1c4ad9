/* aggregator._hotpath: the aggregator's native hot path (see aggregator/hotpath.py).
 *
 * One type, LineFramer: newline framing for one byte stream, with the same behaviour as
 * aggregator.framing.LineFramer (feed, close, pending_bytes), and frame_and_encode(), which does
 * framing, JSON validation and the splice of the added fields in one pass over a read's chunks,
 * into one output block, with the GIL released.
 *
 * Parity with the Python path is by construction where it matters: this code decides only
 *   - EMPTY: a line of JSON whitespace only (counted, as the Python path counts it);
 *   - SPLICE: a line that is certainly a valid UTF-8 JSON object (RFC 8259, strict) holding none
 *     of the added fields at its top level, with no escaped top-level key, no surrogate escape
 *     and at most MAX_DEPTH levels. The Python path accepts every such line (msgspec or orjson)
 *     and writes it exactly as spliced here (records.encode_lines: the fast splice, or
 *     _splice_with_care for surrounding whitespace and "{}");
 *   - DEFER: everything else (invalid input, not an object, a field to replace, a rare escape),
 *     handed back in order, in runs, to the Python encoder given by the caller, which decides
 *     with its own validators and names the reject reason. So rejects, reasons and counters are
 *     the Python path's own, and valid lines never pay for the rare cases.
 * Framing rejects (line_too_long) are this code's, with the Python framer's prefixes and lengths.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define REJECT_PREFIX_BYTES 512 /* framing.REJECT_PREFIX_BYTES */
#define MAX_DEPTH 256           /* deeper lines are deferred (msgspec and orjson differ past ~1000) */
#define MAX_ADDED 16            /* added field names compared at the top level; more: defer all */

typedef unsigned char uc;

/* -- reasons, from aggregator.framing (looked up at import) ---------------------------------- */
static PyObject *RejectType;       /* framing.Reject */
static PyObject *LINE_TOO_LONG;    /* "line_too_long" */
static PyObject *PARTIAL_AT_CLOSE; /* "partial_line_at_close" */
static PyObject *NEWLINE_FREE_KW;  /* {"newline_free": True} */

enum { R_TOO_LONG = 0, R_PARTIAL = 1 };
enum { K_SPLICE = 0, K_EMPTY = 1, K_DEFER = 2 };

/* -- a bump arena for the lines that straddle reads and for reject prefixes ---------------- */
typedef struct Block {
    struct Block *next;
    size_t used, cap;
    uc data[];
} Block;

typedef struct {
    Block *head;
} Arena;

static uc *arena_alloc(Arena *a, size_t n) {
    Block *b = a->head;
    if (b == NULL || b->cap - b->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        b = malloc(sizeof(Block) + cap);
        if (b == NULL)
            return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    uc *p = b->data + b->used;
    b->used += n;
    return p;
}

static void arena_free(Arena *a) {
    Block *b = a->head;
    while (b) {
        Block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
}

/* -- one call's results ----------------------------------------------------------------------- */
typedef struct {
    const uc *line; /* the framed line */
    Py_ssize_t len;
    const uc *copy; /* SPLICE: the bytes written before the suffix */
    Py_ssize_t copy_len;
    uint8_t kind;
    uint8_t comma;   /* SPLICE: the suffix keeps its leading comma (the object has members) */
    uint8_t newline; /* SPLICE: newlines inside become spaces (a datagram's whitespace) */
} Span;

typedef struct {
    int reason;
    const uc *prefix;
    Py_ssize_t prefix_len;
    long long length;
} RejectRec;

typedef struct {
    Arena arena;
    Span *spans;
    Py_ssize_t nspans, spans_cap;
    RejectRec *rejects;
    Py_ssize_t nrejects, rejects_cap;
    int nomem;
} Work;

static void work_free(Work *w) {
    arena_free(&w->arena);
    free(w->spans);
    free(w->rejects);
}

static Span *add_span(Work *w, const uc *line, Py_ssize_t len) {
    if (w->nspans == w->spans_cap) {
        Py_ssize_t cap = w->spans_cap ? w->spans_cap * 2 : 512;
        Span *s = realloc(w->spans, (size_t)cap * sizeof(Span));
        if (s == NULL) {
            w->nomem = 1;
            return NULL;
        }
        w->spans = s;
        w->spans_cap = cap;
    }
    Span *s = &w->spans[w->nspans++];
    s->line = line;
    s->len = len;
    s->kind = K_DEFER;
    return s;
}

/* A reject whose prefix is ``p[:min(n, 512)]`` of bytes that may not outlive this call's state. */
static void add_reject(Work *w, int reason, const uc *p, Py_ssize_t n, long long length, int copy) {
    if (w->nrejects == w->rejects_cap) {
        Py_ssize_t cap = w->rejects_cap ? w->rejects_cap * 2 : 8;
        RejectRec *r = realloc(w->rejects, (size_t)cap * sizeof(RejectRec));
        if (r == NULL) {
            w->nomem = 1;
            return;
        }
        w->rejects = r;
        w->rejects_cap = cap;
    }
    Py_ssize_t keep = n < REJECT_PREFIX_BYTES ? n : REJECT_PREFIX_BYTES;
    if (copy && keep) {
        uc *c = arena_alloc(&w->arena, (size_t)keep);
        if (c == NULL) {
            w->nomem = 1;
            return;
        }
        memcpy(c, p, (size_t)keep);
        p = c;
    }
    RejectRec *r = &w->rejects[w->nrejects++];
    r->reason = reason;
    r->prefix = p;
    r->prefix_len = keep;
    r->length = length;
}

/* -- the framer ------------------------------------------------------------------------------- */
typedef struct {
    PyObject_HEAD
    Py_ssize_t max_line_bytes;
    uc *pending; /* an unfinished line, never longer than max_line_bytes */
    Py_ssize_t pending_len, pending_cap;
    int discarding; /* inside an over-long line: drop until the next newline */
    uc discard_prefix[REJECT_PREFIX_BYTES];
    Py_ssize_t discard_prefix_len;
    long long discard_len;
    int busy; /* a call is under way (the GIL is released during it) */
    int nul_ends_line; /* a NUL byte ends a line as a newline does (syslog clients' framing) */
} Framer;

/* The first line end in [p, p + n): a newline, or a NUL too when ``nul``. */
static inline const uc *first_end(const uc *p, Py_ssize_t n, int nul) {
    if (!nul)
        return memchr(p, '\n', (size_t)n);
    const uc *e = p + n;
#ifdef __SSE2__
    const __m128i newline = _mm_set1_epi8('\n'), zero = _mm_setzero_si128();
    while (e - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)p);
        int mask = _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, newline), _mm_cmpeq_epi8(v, zero)));
        if (mask)
            return p + __builtin_ctz((unsigned)mask);
        p += 16;
    }
#endif
    for (; p < e; p++)
        if (*p == '\n' || *p == 0)
            return p;
    return NULL;
}

/* The last line end in [p, p + n), or NULL. */
static inline const uc *last_end(const uc *p, Py_ssize_t n, int nul) {
    if (!nul)
        return memrchr(p, '\n', (size_t)n);
    for (const uc *q = p + n; q > p;) {
        --q;
        if (*q == '\n' || *q == 0)
            return q;
    }
    return NULL;
}

static void reset_state(Framer *f) {
    f->pending_len = 0;
    f->discarding = 0;
    f->discard_prefix_len = 0;
    f->discard_len = 0;
}

/* framing.LineFramer._hold */
static void hold(Framer *f, Work *w, const uc *tail, Py_ssize_t n) {
    if (f->discarding) {
        f->discard_len += n;
        return;
    }
    Py_ssize_t total = f->pending_len + n;
    if (total > f->max_line_bytes) {
        Py_ssize_t keep = total < REJECT_PREFIX_BYTES ? total : REJECT_PREFIX_BYTES;
        Py_ssize_t from_pending = f->pending_len < keep ? f->pending_len : keep;
        memcpy(f->discard_prefix, f->pending, (size_t)from_pending);
        memcpy(f->discard_prefix + from_pending, tail, (size_t)(keep - from_pending));
        f->discard_prefix_len = keep;
        f->discard_len = total;
        f->discarding = 1;
        f->pending_len = 0;
        return;
    }
    if (total > f->pending_cap) {
        Py_ssize_t cap = f->pending_cap ? f->pending_cap : 256;
        while (cap < total)
            cap *= 2;
        if (cap > f->max_line_bytes)
            cap = f->max_line_bytes;
        uc *p = realloc(f->pending, (size_t)cap);
        if (p == NULL) {
            w->nomem = 1;
            return;
        }
        f->pending = p;
        f->pending_cap = cap;
    }
    memcpy(f->pending + f->pending_len, tail, (size_t)n);
    f->pending_len = total;
}

/* A complete line at ``p`` (within a chunk that outlives the call), or a line_too_long reject. */
static void framed(Framer *f, Work *w, const uc *p, Py_ssize_t n) {
    if (n > f->max_line_bytes)
        add_reject(w, R_TOO_LONG, p, n, n, 0);
    else
        add_span(w, p, n);
}

/* framing.LineFramer.feed, appending spans and rejects to ``w``. */
static void frame_chunk(Framer *f, Work *w, const uc *d, Py_ssize_t n) {
    if (n == 0)
        return;
    Py_ssize_t start = 0;
    if (f->discarding || f->pending_len) {
        const uc *nl = first_end(d, n, f->nul_ends_line);
        if (nl == NULL) {
            hold(f, w, d, n);
            return;
        }
        Py_ssize_t head = nl - d;
        if (f->discarding) {
            add_reject(w, R_TOO_LONG, f->discard_prefix, f->discard_prefix_len, f->discard_len + head, 1);
            f->discarding = 0;
            f->discard_prefix_len = 0;
            f->discard_len = 0;
        } else {
            Py_ssize_t total = f->pending_len + head;
            if (total > f->max_line_bytes) {
                Py_ssize_t keep = total < REJECT_PREFIX_BYTES ? total : REJECT_PREFIX_BYTES;
                uc *c = arena_alloc(&w->arena, (size_t)keep);
                if (c == NULL) {
                    w->nomem = 1;
                    return;
                }
                Py_ssize_t from_pending = f->pending_len < keep ? f->pending_len : keep;
                memcpy(c, f->pending, (size_t)from_pending);
                memcpy(c + from_pending, d, (size_t)(keep - from_pending));
                add_reject(w, R_TOO_LONG, c, keep, total, 0);
            } else {
                uc *c = arena_alloc(&w->arena, (size_t)total + 1);
                if (c == NULL) {
                    w->nomem = 1;
                    return;
                }
                memcpy(c, f->pending, (size_t)f->pending_len);
                memcpy(c + f->pending_len, d, (size_t)head);
                add_span(w, c, total);
            }
            f->pending_len = 0;
        }
        start = head + 1;
    }
    if (start >= n)
        return; /* hold(b"") changes nothing */
    const uc *last = last_end(d + start, n - start, f->nul_ends_line);
    if (last == NULL) {
        hold(f, w, d + start, n - start);
        return;
    }
    const uc *p = d + start;
    for (;;) {
        const uc *nl = first_end(p, last - p + 1, f->nul_ends_line);
        framed(f, w, p, nl - p);
        if (nl == last)
            break;
        p = nl + 1;
    }
    if (last + 1 < d + n)
        hold(f, w, last + 1, (d + n) - (last + 1));
}

/* -- JSON validation ---------------------------------------------------------------------------- */
static uint8_t PLAIN[256];   /* a string byte that needs no look: 0x20-0x7f except '"' and '\\' */
static uint8_t WS[256];      /* JSON whitespace */
static uint8_t HEX[256];     /* hex digit value + 1, or 0 */

static void init_tables(void) {
    for (int c = 0; c < 256; c++) {
        PLAIN[c] = c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
        WS[c] = c == ' ' || c == '\t' || c == '\n' || c == '\r';
        HEX[c] = (c >= '0' && c <= '9') ? (uint8_t)(c - '0' + 1)
                 : (c >= 'a' && c <= 'f') ? (uint8_t)(c - 'a' + 11)
                 : (c >= 'A' && c <= 'F') ? (uint8_t)(c - 'A' + 11)
                                          : 0;
    }
}

static inline const uc *skip_ws(const uc *p, const uc *e) {
    while (p < e && WS[*p])
        p++;
    return p;
}

/* Length of the strict UTF-8 sequence at p (Unicode table 3-7: no overlongs, no surrogates,
 * nothing past U+10FFFF), or 0. */
static inline int utf8_sequence(const uc *p, const uc *e) {
    uc c = p[0], lo = 0x80, hi = 0xBF; /* the second byte's range; the others are 80..BF */
    int n;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        else if (c == 0xED)
            hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* past U+10FFFF */
    } else
        return 0;
    if (e - p < n || p[1] < lo || p[1] > hi)
        return 0;
    for (int i = 2; i < n; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    return n;
}

/* The string at p (p[0] == '"'): returns the byte after its closing quote, or NULL (defer).
 * *escaped is set when the string holds an escape. */
static inline const uc *scan_string(const uc *p, const uc *e, int *escaped) {
    p++;
    for (;;) {
#ifdef __SSE2__
        /* 16 bytes at a time: stop at '"', '\\', a control byte or a non-ASCII byte (as signed
         * bytes, both are below 0x20). */
        const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'), space = _mm_set1_epi8(0x20);
        while (e - p >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)p);
            __m128i stop = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                                        _mm_cmplt_epi8(v, space));
            int mask = _mm_movemask_epi8(stop);
            if (mask) {
                p += __builtin_ctz((unsigned)mask);
                break;
            }
            p += 16;
        }
#endif
        while (p < e && PLAIN[*p])
            p++;
        if (p >= e)
            return NULL;
        uc c = *p;
        if (c == '"')
            return p + 1;
        if (c == '\\') {
            *escaped = 1;
            if (p + 1 >= e)
                return NULL;
            switch (p[1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                p += 2;
                continue;
            case 'u': {
                if (e - p < 6 || !HEX[p[2]] || !HEX[p[3]] || !HEX[p[4]] || !HEX[p[5]])
                    return NULL;
                unsigned code = ((HEX[p[2]] - 1u) << 12) | ((HEX[p[3]] - 1u) << 8) | ((HEX[p[4]] - 1u) << 4) | (HEX[p[5]] - 1u);
                if (code >= 0xD800 && code <= 0xDFFF)
                    return NULL; /* surrogates: the validators decide */
                p += 6;
                continue;
            }
            default:
                return NULL;
            }
        }
        if (c < 0x20)
            return NULL;
        int n = utf8_sequence(p, e);
        if (n == 0)
            return NULL;
        p += n;
    }
}

#define DIGIT(c) ((unsigned)((c) - '0') < 10u)

static inline const uc *scan_number(const uc *p, const uc *e) {
    if (*p == '-' && ++p >= e)
        return NULL;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9') {
        p++;
        while (p < e && DIGIT(*p))
            p++;
    } else
        return NULL;
    if (p < e && *p == '.') {
        p++;
        if (p >= e || !DIGIT(*p))
            return NULL;
        while (p < e && DIGIT(*p))
            p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        if (p >= e || !DIGIT(*p))
            return NULL;
        while (p < e && DIGIT(*p))
            p++;
    }
    return p;
}

typedef struct {
    int count; /* -1: too many names, defer every object */
    const char *name[MAX_ADDED];
    Py_ssize_t len[MAX_ADDED];
} Names;

static inline int is_added(const Names *names, const uc *key, Py_ssize_t n) {
    for (int i = 0; i < names->count; i++)
        if (names->len[i] == n && memcmp(names->name[i], key, (size_t)n) == 0)
            return 1;
    return 0;
}

/* 1 if [p, e) (p at '{') is one valid JSON object, then only whitespace, that holds none of
 * ``names`` at its top level (and no escaped top-level key); else 0. */
static int valid_object(const uc *p, const uc *e, const Names *names) {
    uc stack[MAX_DEPTH];
    int depth = 0;
    int escaped;
    if (names->count < 0)
        return 0;
value:
    p = skip_ws(p, e);
    if (p >= e)
        return 0;
    switch (*p) {
    case '{':
    case '[': {
        uc close = *p == '{' ? '}' : ']';
        if (depth == MAX_DEPTH)
            return 0;
        stack[depth++] = close;
        p = skip_ws(p + 1, e);
        if (p < e && *p == close) {
            p++;
            depth--;
            goto after;
        }
        if (close == '}')
            goto key;
        goto value;
    }
    case '"':
        escaped = 0;
        p = scan_string(p, e, &escaped);
        if (p == NULL)
            return 0;
        goto after;
    case 't':
    case 'f':
    case 'n': {
        const char *word = *p == 't' ? "true" : *p == 'f' ? "false" : "null";
        size_t len = strlen(word);
        if ((size_t)(e - p) >= len && memcmp(p, word, len) == 0) {
            p += len;
            goto after;
        }
        return 0;
    }
    default:
        if (*p == '-' || DIGIT(*p)) {
            p = scan_number(p, e);
            if (p == NULL)
                return 0;
            goto after;
        }
        return 0;
    }
key:
    if (p >= e || *p != '"')
        return 0;
    {
        const uc *k = p;
        escaped = 0;
        p = scan_string(p, e, &escaped);
        if (p == NULL)
            return 0;
        if (depth == 1 && (escaped || is_added(names, k + 1, p - k - 2)))
            return 0;
    }
    p = skip_ws(p, e);
    if (p >= e || *p != ':')
        return 0;
    p++;
    goto value;
after:
    if (depth == 0)
        return skip_ws(p, e) == e;
    p = skip_ws(p, e);
    if (p >= e)
        return 0;
    if (*p == ',') {
        p = skip_ws(p + 1, e);
        if (stack[depth - 1] == '}')
            goto key;
        goto value;
    }
    if (*p == stack[depth - 1]) {
        p++;
        depth--;
        goto after;
    }
    return 0;
}

/* Decide a line: EMPTY, SPLICE (with what to copy) or DEFER; as records.encode_lines does. */
static void classify(Span *s, const Names *names, int newline_free) {
    const uc *b = s->line, *e = s->line + s->len;
    const uc *first = skip_ws(b, e);
    if (first == e) {
        s->kind = K_EMPTY;
        return;
    }
    if (*first != '{' || !valid_object(first, e, names)) {
        s->kind = K_DEFER;
        return;
    }
    s->kind = K_SPLICE;
    s->newline = 0;
    /* A valid object is at least "{}": the line has two bytes or more. */
    uc before = e[-2];
    if (e[-1] == '}' && !WS[before] && before != '{' && (newline_free || memchr(b, '\n', (size_t)s->len) == NULL)) {
        s->copy = b; /* the fast splice: the line as it came, without its closing brace */
        s->copy_len = s->len - 1;
        s->comma = 1;
        return;
    }
    /* records._splice_with_care: strip, newlines to spaces, no closing brace, trailing space out */
    const uc *end = e;
    while (WS[end[-1]])
        end--;
    end--; /* the closing brace */
    while (end > first && WS[end[-1]])
        end--;
    s->copy = first;
    s->copy_len = end - first;
    s->comma = end[-1] != '{';
    s->newline = !newline_free && memchr(first, '\n', (size_t)(end - first)) != NULL;
}

/* -- Python glue ------------------------------------------------------------------------------- */
static PyObject *make_reject(const RejectRec *r) {
    PyObject *reason = r->reason == R_TOO_LONG ? LINE_TOO_LONG : PARTIAL_AT_CLOSE;
    PyObject *data = PyBytes_FromStringAndSize((const char *)r->prefix, r->prefix_len);
    if (data == NULL)
        return NULL;
    PyObject *rej = PyObject_CallFunction(RejectType, "OOL", reason, data, r->length);
    Py_DECREF(data);
    return rej;
}

static int append_rejects(Work *w, PyObject *rejects) {
    for (Py_ssize_t i = 0; i < w->nrejects; i++) {
        PyObject *r = make_reject(&w->rejects[i]);
        if (r == NULL || PyList_Append(rejects, r) < 0) {
            Py_XDECREF(r);
            return -1;
        }
        Py_DECREF(r);
    }
    return 0;
}

static int enter(Framer *f) {
    if (f->busy) {
        PyErr_SetString(PyExc_RuntimeError, "LineFramer used by two threads at once");
        return -1;
    }
    f->busy = 1;
    return 0;
}

/* Frame ``chunks`` (buffers already acquired) into ``w`` without the GIL. */
static void frame_all(Framer *f, Work *w, Py_buffer *bufs, Py_ssize_t n) {
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n && !w->nomem; i++)
        frame_chunk(f, w, bufs[i].buf, bufs[i].len);
    Py_END_ALLOW_THREADS
}

static Py_buffer *get_buffers(PyObject *seq, Py_ssize_t *count) {
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    Py_buffer *bufs = PyMem_Calloc(n ? (size_t)n : 1, sizeof(Py_buffer));
    if (bufs == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, i), &bufs[i], PyBUF_SIMPLE) < 0) {
            for (Py_ssize_t j = 0; j < i; j++)
                PyBuffer_Release(&bufs[j]);
            PyMem_Free(bufs);
            return NULL;
        }
    }
    *count = n;
    return bufs;
}

/* The buffers of a sequence of chunks (``*seq`` keeps it alive; both released by the caller). */
static int get_chunks(PyObject *chunks, PyObject **seq, Py_buffer **bufs, Py_ssize_t *nbufs) {
    *seq = PySequence_Fast(chunks, "chunks must be a sequence of bytes");
    if (*seq == NULL)
        return -1;
    *bufs = get_buffers(*seq, nbufs);
    return *bufs == NULL ? -1 : 0;
}

static void release_buffers(Py_buffer *bufs, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++)
        PyBuffer_Release(&bufs[i]);
    PyMem_Free(bufs);
}

static int Framer_init(Framer *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"max_line_bytes", "nul_ends_line", NULL};
    Py_ssize_t max_line_bytes;
    int nul_ends_line = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n|$p", kwlist, &max_line_bytes, &nul_ends_line))
        return -1;
    self->nul_ends_line = nul_ends_line;
    if (max_line_bytes < 1) {
        PyErr_SetString(PyExc_ValueError, "max_line_bytes must be positive");
        return -1;
    }
    self->max_line_bytes = max_line_bytes;
    reset_state(self);
    return 0;
}

static void Framer_dealloc(Framer *self) {
    free(self->pending);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

PyDoc_STRVAR(feed_doc, "feed(data, lines, rejects): as framing.LineFramer.feed.");

static PyObject *Framer_feed(Framer *self, PyObject *args) {
    PyObject *data, *lines, *rejects;
    if (!PyArg_ParseTuple(args, "OO!O!", &data, &PyList_Type, &lines, &PyList_Type, &rejects))
        return NULL;
    Py_buffer buf;
    if (PyObject_GetBuffer(data, &buf, PyBUF_SIMPLE) < 0)
        return NULL;
    if (enter(self) < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    Work w = {0};
    frame_all(self, &w, &buf, 1);
    int failed = w.nomem;
    if (failed)
        PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < w.nspans && !failed; i++) {
        PyObject *line = PyBytes_FromStringAndSize((const char *)w.spans[i].line, w.spans[i].len);
        failed = line == NULL || PyList_Append(lines, line) < 0;
        Py_XDECREF(line);
    }
    if (!failed)
        failed = append_rejects(&w, rejects) < 0;
    work_free(&w);
    self->busy = 0;
    PyBuffer_Release(&buf);
    if (failed)
        return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(close_doc, "close(rejects): as framing.LineFramer.close.");

static PyObject *Framer_close(Framer *self, PyObject *rejects) {
    if (!PyList_Check(rejects)) {
        PyErr_SetString(PyExc_TypeError, "rejects must be a list");
        return NULL;
    }
    if (enter(self) < 0)
        return NULL;
    RejectRec r = {0};
    int have = 0;
    if (self->discarding) {
        r = (RejectRec){R_TOO_LONG, self->discard_prefix, self->discard_prefix_len, self->discard_len};
        have = 1;
    } else if (self->pending_len) {
        Py_ssize_t keep = self->pending_len < REJECT_PREFIX_BYTES ? self->pending_len : REJECT_PREFIX_BYTES;
        r = (RejectRec){R_PARTIAL, self->pending, keep, self->pending_len};
        have = 1;
    }
    int failed = 0;
    if (have) {
        PyObject *rej = make_reject(&r);
        failed = rej == NULL || PyList_Append(rejects, rej) < 0;
        Py_XDECREF(rej);
    }
    reset_state(self);
    self->busy = 0;
    if (failed)
        return NULL;
    Py_RETURN_NONE;
}

static int get_names(PyObject *added, Names *names) {
    PyObject *seq = PySequence_Fast(added, "added must be a sequence of field names");
    if (seq == NULL)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    names->count = n > MAX_ADDED ? -1 : (int)n;
    for (Py_ssize_t i = 0; i < n && i < MAX_ADDED; i++) {
        /* The UTF-8 form is cached in the str object, which ``added`` keeps alive. */
        names->name[i] = PyUnicode_AsUTF8AndSize(PySequence_Fast_GET_ITEM(seq, i), &names->len[i]);
        if (names->name[i] == NULL) {
            Py_DECREF(seq);
            return -1;
        }
    }
    Py_DECREF(seq);
    return 0;
}

/* Copy the SPLICE spans [from, to) into ``dst`` (the size computed by block_size). */
static void fill_block(uc *dst, const Span *spans, Py_ssize_t from, Py_ssize_t to, const uc *suffix, Py_ssize_t suffix_len) {
    for (Py_ssize_t i = from; i < to; i++) {
        const Span *s = &spans[i];
        if (s->kind != K_SPLICE)
            continue;
        memcpy(dst, s->copy, (size_t)s->copy_len);
        if (s->newline)
            for (uc *q = dst; q < dst + s->copy_len; q++)
                if (*q == '\n')
                    *q = ' ';
        dst += s->copy_len;
        Py_ssize_t skip = s->comma ? 0 : 1;
        memcpy(dst, suffix + skip, (size_t)(suffix_len - skip));
        dst += suffix_len - skip;
    }
}

typedef struct {
    PyObject *block; /* a bytes object of spliced lines, or NULL: a run of deferred lines */
    Py_ssize_t from, to;
} Run;

/* Classify every span, then emit runs in order: blocks of spliced lines (filled without the
 * GIL), and runs of deferred lines handed to ``encode(run, *encode_args, newline_free=...)``. */
static PyObject *encode_spans(Work *w, const Names *names, int newline_free, const uc *suffix, Py_ssize_t suffix_len,
                              PyObject *out, PyObject *rejects, PyObject *encode, PyObject *encode_args,
                              Py_ssize_t messages, int validate) {
    Py_ssize_t written = 0, empty = 0;
    if (validate) {
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < w->nspans; i++)
            classify(&w->spans[i], names, newline_free);
        Py_END_ALLOW_THREADS
    } /* else every line stays K_DEFER: another input format than JSON decides them all */

    /* Runs: maximal stretches of SPLICE (or EMPTY) spans, and of DEFER (or EMPTY) spans. */
    Run *runs = NULL;
    Py_ssize_t nruns = 0, cap = 0;
    PyObject *result = NULL;
    for (Py_ssize_t i = 0; i < w->nspans;) {
        if (w->spans[i].kind == K_EMPTY) {
            empty++;
            i++;
            continue;
        }
        int defer = w->spans[i].kind == K_DEFER;
        Py_ssize_t j = i, size = 0;
        for (; j < w->nspans && (w->spans[j].kind == K_EMPTY || (w->spans[j].kind == K_DEFER) == defer); j++) {
            const Span *s = &w->spans[j];
            if (s->kind == K_SPLICE) {
                size += s->copy_len + suffix_len - (s->comma ? 0 : 1);
                written++;
            } else if (s->kind == K_EMPTY && !defer) {
                empty++;
            }
        }
        if (nruns == cap) {
            cap = cap ? cap * 2 : 4;
            Run *r = PyMem_Realloc(runs, (size_t)cap * sizeof(Run));
            if (r == NULL) {
                PyErr_NoMemory();
                goto done;
            }
            runs = r;
        }
        Run *run = &runs[nruns++];
        run->from = i;
        run->to = j;
        run->block = NULL;
        if (!defer) {
            run->block = PyBytes_FromStringAndSize(NULL, size);
            if (run->block == NULL)
                goto done;
        }
        i = j;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t r = 0; r < nruns; r++)
        if (runs[r].block)
            fill_block((uc *)PyBytes_AS_STRING(runs[r].block), w->spans, runs[r].from, runs[r].to, suffix, suffix_len);
    Py_END_ALLOW_THREADS

    for (Py_ssize_t r = 0; r < nruns; r++) {
        if (runs[r].block) {
            if (PyList_Append(out, runs[r].block) < 0)
                goto done;
            continue;
        }
        /* A run of lines the Python encoder decides (EMPTY ones inside are its to count). */
        PyObject *lines = PyList_New(0);
        if (lines == NULL)
            goto done;
        for (Py_ssize_t i = runs[r].from; i < runs[r].to; i++) {
            PyObject *line = PyBytes_FromStringAndSize((const char *)w->spans[i].line, w->spans[i].len);
            if (line == NULL || PyList_Append(lines, line) < 0) {
                Py_XDECREF(line);
                Py_DECREF(lines);
                goto done;
            }
            Py_DECREF(line);
        }
        PyObject *args = PyTuple_New(1 + PyTuple_GET_SIZE(encode_args));
        if (args == NULL) {
            Py_DECREF(lines);
            goto done;
        }
        PyTuple_SET_ITEM(args, 0, lines);
        for (Py_ssize_t a = 0; a < PyTuple_GET_SIZE(encode_args); a++) {
            PyObject *arg = PyTuple_GET_ITEM(encode_args, a);
            Py_INCREF(arg);
            PyTuple_SET_ITEM(args, a + 1, arg);
        }
        PyObject *kwargs = newline_free ? NEWLINE_FREE_KW : NULL;
        PyObject *got = PyObject_Call(encode, args, kwargs);
        Py_DECREF(args);
        if (got == NULL)
            goto done;
        Py_ssize_t w_, e_;
        if (!PyArg_ParseTuple(got, "nn", &w_, &e_)) {
            Py_DECREF(got);
            goto done;
        }
        Py_DECREF(got);
        written += w_;
        empty += e_;
    }
    result = Py_BuildValue("nnn", messages, written, empty);
done:
    for (Py_ssize_t r = 0; r < nruns; r++)
        Py_XDECREF(runs[r].block);
    PyMem_Free(runs);
    (void)rejects;
    return result;
}

PyDoc_STRVAR(frame_and_encode_doc,
"frame_and_encode(chunks, suffix, added, out, rejects, encode, encode_args, validate=True) -> (messages, written, empty)\n\n"
"Frame the bytes of ``chunks`` (one read's, in order) after this connection's partial line;\n"
"append line_too_long rejects to ``rejects``, then the output of every framed line to ``out``:\n"
"valid objects spliced here (``line[:-1] + suffix``), others through\n"
"``encode(lines, *encode_args, newline_free=True)`` (records.encode_lines' signature), in order.\n"
"``added``: the field names the suffix sets. ``messages``: lines framed. ``validate`` False: every\n"
"line goes to ``encode`` (an input format other than JSON).");

static PyObject *Framer_frame_and_encode(Framer *self, PyObject *args) {
    PyObject *chunks, *added, *out, *rejects, *encode, *encode_args;
    Py_buffer suffix;
    int validate = 1;
    if (!PyArg_ParseTuple(args, "Oy*OO!O!OO!|p", &chunks, &suffix, &added, &PyList_Type, &out, &PyList_Type, &rejects,
                          &encode, &PyTuple_Type, &encode_args, &validate))
        return NULL;
    PyObject *result = NULL;
    Names names;
    PyObject *seq = NULL;
    Py_buffer *bufs = NULL;
    Py_ssize_t nbufs = 0;
    if (get_names(added, &names) < 0 || get_chunks(chunks, &seq, &bufs, &nbufs) < 0)
        goto release;
    if (enter(self) < 0)
        goto release;
    Work w = {0};
    frame_all(self, &w, bufs, nbufs);
    if (w.nomem)
        PyErr_NoMemory();
    else if (append_rejects(&w, rejects) == 0)
        result = encode_spans(&w, &names, 1, suffix.buf, suffix.len, out, rejects, encode, encode_args, w.nspans, validate);
    work_free(&w);
    self->busy = 0;
release:
    if (bufs)
        release_buffers(bufs, nbufs);
    Py_XDECREF(seq);
    PyBuffer_Release(&suffix);
    return result;
}

PyDoc_STRVAR(encode_lines_doc,
"encode_lines(lines, suffix, added, out, rejects, encode, encode_args, newline_free) -> (written, empty)\n\n"
"records.encode_lines for already framed messages (datagrams): valid objects spliced here,\n"
"the others through ``encode`` in order, as frame_and_encode does.");

static PyObject *hot_encode_lines(PyObject *module, PyObject *args) {
    PyObject *lines, *added, *out, *rejects, *encode, *encode_args;
    Py_buffer suffix;
    int newline_free;
    if (!PyArg_ParseTuple(args, "O!y*OO!O!OO!p", &PyList_Type, &lines, &suffix, &added, &PyList_Type, &out, &PyList_Type,
                          &rejects, &encode, &PyTuple_Type, &encode_args, &newline_free))
        return NULL;
    PyObject *result = NULL;
    Names names;
    Py_buffer *bufs = NULL;
    Py_ssize_t nbufs = 0;
    Work w = {0};
    if (get_names(added, &names) < 0)
        goto release;
    bufs = get_buffers(lines, &nbufs);
    if (bufs == NULL)
        goto release;
    for (Py_ssize_t i = 0; i < nbufs; i++)
        if (add_span(&w, bufs[i].buf, bufs[i].len) == NULL) {
            PyErr_NoMemory();
            goto release;
        }
    PyObject *got = encode_spans(&w, &names, newline_free, suffix.buf, suffix.len, out, rejects, encode, encode_args, 0, 1);
    if (got != NULL) {
        Py_ssize_t m, wr, em;
        if (PyArg_ParseTuple(got, "nnn", &m, &wr, &em))
            result = Py_BuildValue("nn", wr, em);
        Py_DECREF(got);
    }
release:
    work_free(&w);
    if (bufs)
        release_buffers(bufs, nbufs);
    PyBuffer_Release(&suffix);
    return result;
}

PyDoc_STRVAR(stage_costs_doc,
"stage_costs(chunks, suffix, added, repeats) -> (framing_ns, validation_ns, splice_ns, lines)\n\n"
"For the microbenchmark: ``repeats`` passes over ``chunks`` (complete lines), timing framing alone,\n"
"then validation of the framed lines, then the copy into an output block; no Python objects made.");

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static PyObject *hot_stage_costs(PyObject *module, PyObject *args) {
    PyObject *chunks, *added;
    Py_buffer suffix;
    Py_ssize_t repeats;
    if (!PyArg_ParseTuple(args, "Oy*On", &chunks, &suffix, &added, &repeats))
        return NULL;
    PyObject *result = NULL, *seq = NULL;
    Py_buffer *bufs = NULL;
    Py_ssize_t nbufs = 0, lines = 0;
    Names names;
    long long t_frame = 0, t_validate = 0, t_splice = 0;
    int nomem = 0;
    if (get_names(added, &names) < 0 || get_chunks(chunks, &seq, &bufs, &nbufs) < 0)
        goto release;
    Py_BEGIN_ALLOW_THREADS
    /* Read by read, as frame_and_encode works: each chunk framed, its lines validated, then
     * copied into one output block (one buffer, reused: the path's blocks come from malloc too). */
    Framer f = {0};
    f.max_line_bytes = 1 << 30;
    uc *dst = NULL;
    size_t dst_cap = 0;
    for (Py_ssize_t r = 0; r < repeats && !nomem; r++) {
        lines = 0;
        for (Py_ssize_t i = 0; i < nbufs && !nomem; i++) {
            Work w = {0};
            long long t0 = now_ns();
            frame_chunk(&f, &w, bufs[i].buf, bufs[i].len);
            long long t1 = now_ns();
            Py_ssize_t size = 0;
            for (Py_ssize_t k = 0; k < w.nspans; k++) {
                classify(&w.spans[k], &names, 1);
                if (w.spans[k].kind == K_SPLICE)
                    size += w.spans[k].copy_len + suffix.len;
            }
            long long t2 = now_ns();
            if ((size_t)size + 1 > dst_cap) {
                uc *grown = realloc(dst, (size_t)size + 1);
                if (grown == NULL)
                    nomem = 1;
                else {
                    dst = grown;
                    dst_cap = (size_t)size + 1;
                }
            }
            if (!nomem)
                fill_block(dst, w.spans, 0, w.nspans, suffix.buf, suffix.len);
            long long t3 = now_ns();
            t_frame += t1 - t0;
            t_validate += t2 - t1;
            t_splice += t3 - t2;
            lines += w.nspans;
            nomem |= w.nomem;
            work_free(&w);
        }
    }
    free(dst);
    free(f.pending);
    Py_END_ALLOW_THREADS
    if (nomem)
        PyErr_NoMemory();
    else
        result = Py_BuildValue("LLLn", t_frame, t_validate, t_splice, lines);
release:
    if (bufs)
        release_buffers(bufs, nbufs);
    Py_XDECREF(seq);
    PyBuffer_Release(&suffix);
    return result;
}

static PyObject *Framer_pending_bytes(Framer *self, void *closure) {
    return PyLong_FromSsize_t(self->pending_len);
}

static PyObject *Framer_max_line_bytes(Framer *self, void *closure) {
    return PyLong_FromSsize_t(self->max_line_bytes);
}

static PyMethodDef Framer_methods[] = {
    {"feed", (PyCFunction)Framer_feed, METH_VARARGS, feed_doc},
    {"close", (PyCFunction)Framer_close, METH_O, close_doc},
    {"frame_and_encode", (PyCFunction)Framer_frame_and_encode, METH_VARARGS, frame_and_encode_doc},
    {NULL},
};

static PyObject *Framer_newline_free(Framer *self, void *closure) {
    Py_RETURN_TRUE; /* no line it frames holds a newline (framing.LineFramer.newline_free) */
}

static PyGetSetDef Framer_getset[] = {
    {"newline_free", (getter)Framer_newline_free, NULL, "no framed line holds a newline", NULL},
    {"pending_bytes", (getter)Framer_pending_bytes, NULL, "bytes of an unfinished line held", NULL},
    {"max_line_bytes", (getter)Framer_max_line_bytes, NULL, "the longest line accepted", NULL},
    {NULL},
};

static PyTypeObject FramerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "aggregator._hotpath.LineFramer",
    .tp_doc = PyDoc_STR("Newline framing of one byte stream, with the native hot path (see the module doc)."),
    .tp_basicsize = sizeof(Framer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Framer_init,
    .tp_dealloc = (destructor)Framer_dealloc,
    .tp_methods = Framer_methods,
    .tp_getset = Framer_getset,
};

static PyMethodDef module_methods[] = {
    {"encode_lines", hot_encode_lines, METH_VARARGS, encode_lines_doc},
    {"stage_costs", hot_stage_costs, METH_VARARGS, stage_costs_doc},
    {NULL},
};

static struct PyModuleDef hotpath_module = {
    PyModuleDef_HEAD_INIT, "aggregator._hotpath",
    "The aggregator's native hot path: framing, JSON validation and splice in one pass (see hotpath.c).", -1,
    module_methods,
};

PyMODINIT_FUNC PyInit__hotpath(void) {
    init_tables();
    PyObject *framing = PyImport_ImportModule("aggregator.framing");
    if (framing == NULL)
        return NULL;
    RejectType = PyObject_GetAttrString(framing, "Reject");
    LINE_TOO_LONG = PyObject_GetAttrString(framing, "LINE_TOO_LONG");
    PARTIAL_AT_CLOSE = PyObject_GetAttrString(framing, "PARTIAL_LINE_AT_CLOSE");
    Py_DECREF(framing);
    if (RejectType == NULL || LINE_TOO_LONG == NULL || PARTIAL_AT_CLOSE == NULL)
        return NULL;
    NEWLINE_FREE_KW = Py_BuildValue("{s:O}", "newline_free", Py_True);
    if (NEWLINE_FREE_KW == NULL || PyType_Ready(&FramerType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&hotpath_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&FramerType);
    if (PyModule_AddObject(m, "LineFramer", (PyObject *)&FramerType) < 0) {
        Py_DECREF(&FramerType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
