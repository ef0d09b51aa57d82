# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The compiled hot paths of projections (``make install`` builds them: ``python -m
infra.build_ext``). Each has a Python twin that stays the reference, used when this module is
not built, and a test holding the two equal:

- :class:`FieldsReader`: the fields reader of :mod:`streams._plain_fields`, a schema's plan (one
  step per value, made in Python by ``_plain_fields.plan``) run by a loop in C. What it returns
  equals ``_plain_fields.python_fields_reader``'s (the same plan run in Python), and it refuses
  whatever that refuses (tests/unit/test_plain_fields.py runs every case on both). Values the
  plan does not read in C (records, arrays, maps, bytes, fixed, other unions, a uuid not in
  canonical form) go through the plain reader's Python closures, as there. Numbers are read little-endian (Avro's
  order), as the host's: x86-64 and arm64.
- :class:`SketchAdd`: ``streams.sketch.Sketch.add_to_data`` (tests/unit/projections/test_sketch_key.py).
- :func:`pack_uuids`: ``streams.projections._seen``'s packing of canonical uuid event ids
  (tests/unit/projections/test_seen_blocks.py).
- :func:`read_plain`, :func:`decode_run`, :func:`dedupe_run`: the loops of
  ``streams.projections._decode`` (tests/unit/projections/test_decode_run.py).
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.math cimport ceil, log
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, qsort
from libc.string cimport memcmp, memcpy, memmove


cdef extern from "Python.h":
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    void* PyUnicode_DATA(object o)
    bint PyUnicode_IS_ASCII(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)

import math

from streams._plain_avro import PlainReadError

# the steps of a plan: (step, slot, argument); slot -1 steps over the value
cdef enum:
    S_NULL = 0
    S_BOOLEAN = 1
    S_LONG = 2
    S_FLOAT = 3
    S_DOUBLE = 4
    S_STRING = 5
    S_UUID = 6
    S_ENUM = 7
    S_OPTIONAL = 8
    S_CLOSURE = 9

STEPS = {
    "null": S_NULL, "boolean": S_BOOLEAN, "long": S_LONG, "float": S_FLOAT, "double": S_DOUBLE,
    "string": S_STRING, "uuid": S_UUID, "enum": S_ENUM, "optional": S_OPTIONAL, "closure": S_CLOSURE,
}

# 32 lower-case hex digits and four dashes at 8, 13, 18, 23: what _CANONICAL_UUID matches
cdef unsigned char _HEX_DIGIT[256]
for _c in range(256):
    _HEX_DIGIT[_c] = (48 <= _c <= 57) or (97 <= _c <= 102)


cdef inline bint _canonical_uuid(const unsigned char* p) noexcept nogil:
    cdef int i
    if p[8] != 45 or p[13] != 45 or p[18] != 45 or p[23] != 45:
        return False
    for i in range(36):
        if not _HEX_DIGIT[p[i]] and i != 8 and i != 13 and i != 18 and i != 23:
            return False
    return True


cdef object _ascii(const unsigned char* p, Py_ssize_t size):
    """A str of ``size`` bytes known to be ASCII, copied as they are."""
    cdef object text = PyUnicode_New(size, 127)
    memcpy(PyUnicode_DATA(text), p, size)
    return text


cdef object _text(const unsigned char* p, Py_ssize_t size):
    """UTF-8 text (invalid bytes refused, as ``bytes.decode``); ASCII copied as it is."""
    cdef Py_ssize_t i
    for i in range(size):
        if p[i] >= 0x80:
            return PyUnicode_DecodeUTF8(<const char*> p, size, NULL)
    return _ascii(p, size)


cdef int _long(const unsigned char* p, Py_ssize_t n, Py_ssize_t* at, int64_t* out) except -1:
    """A zig-zag varint at ``at[0]`` (at most 10 bytes, 64 bits), as ``_plain_avro._long``."""
    cdef Py_ssize_t i = at[0]
    cdef uint64_t v = 0
    cdef uint64_t b
    cdef int shift = 0
    while True:
        if i >= n:
            raise PlainReadError("varint past the end")
        b = p[i]
        i += 1
        if shift == 63 and b > 1:
            raise PlainReadError("varint beyond 64 bits or longer than 10 bytes")
        v |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
    at[0] = i
    out[0] = <int64_t>(v >> 1) ^ -<int64_t>(v & 1)
    return 0


cdef class FieldsReader:
    """A schema's plan; its bound :meth:`read` is the reader (a bound method of a compiled
    class is called without the argument tuple a ``__call__`` costs)."""

    cdef int n
    cdef int* steps
    cdef int* slots
    cdef list args
    cdef tuple keys

    def __cinit__(self, plan, keys):
        self.n = len(plan)
        self.steps = <int*> PyMem_Malloc(max(self.n, 1) * sizeof(int))
        self.slots = <int*> PyMem_Malloc(max(self.n, 1) * sizeof(int))
        if self.steps == NULL or self.slots == NULL:
            raise MemoryError()
        self.args = []
        self.keys = tuple(keys)
        for i, (step, slot, arg) in enumerate(plan):
            # what the loop takes on trust (no bounds or type checks there), checked once here
            if not -1 <= slot < len(self.keys):
                raise ValueError(f"step {i}: slot {slot} of {len(self.keys)} kept fields")
            if step == "enum" and type(arg) is not tuple:
                raise ValueError(f"step {i}: an enum's symbols are a tuple")
            if step == "optional" and not (type(arg) is int and arg >= 0):
                raise ValueError(f"step {i}: an optional's steps to skip are a count")
            if step in ("uuid", "closure") and not callable(arg):
                raise ValueError(f"step {i}: a {step} step reads with a function")
            self.steps[i] = STEPS[step]
            self.slots[i] = slot
            self.args.append(arg)

    def __dealloc__(self):
        PyMem_Free(self.steps)
        PyMem_Free(self.slots)

    def read(self, buf, Py_ssize_t pos):
        """``(dict of the kept fields, end)`` of the record at ``pos`` of ``buf``."""
        if type(buf) is not bytes:
            buf = bytes(buf)
        cdef const unsigned char* p = <const unsigned char*> PyBytes_AS_STRING(buf)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(buf)
        cdef dict out = {}
        cdef int i = 0
        cdef int step, slot
        cdef int64_t number
        cdef double real
        cdef float single
        cdef unsigned char b
        cdef object value
        cdef tuple symbols
        if pos < 0:
            raise PlainReadError(f"position {pos}")
        while i < self.n:
            step = self.steps[i]
            slot = self.slots[i]
            if step == S_LONG:
                _long(p, n, &pos, &number)
                if slot >= 0:
                    out[self.keys[slot]] = number
            elif step == S_STRING or step == S_UUID:
                if step == S_UUID and slot >= 0 and pos < n and p[pos] == 72:
                    if pos + 37 > n:
                        raise PlainReadError("uuid past the end")
                    if _canonical_uuid(p + pos + 1):
                        out[self.keys[slot]] = _ascii(p + pos + 1, 36)
                        pos += 37
                        i += 1
                        continue
                if step == S_UUID and slot >= 0:  # another spelling: normalised or refused
                    value, pos = self.args[i](buf, pos)
                    out[self.keys[slot]] = value
                    i += 1
                    continue
                _long(p, n, &pos, &number)
                if number < 0 or number > n - pos:
                    raise PlainReadError(f"length {number} at byte {pos} runs past the end")
                if slot >= 0:
                    out[self.keys[slot]] = _text(p + pos, <Py_ssize_t> number)
                pos += <Py_ssize_t> number
            elif step == S_OPTIONAL:
                if pos >= n:
                    raise PlainReadError("union branch past the end")
                b = p[pos]
                pos += 1
                if b == 0:
                    if slot >= 0:
                        out[self.keys[slot]] = None
                    i += 1 + <int> self.args[i]  # over the other branch's steps
                    continue
                if b != 2:
                    raise PlainReadError(f"union branch byte {b} of 2 branches")
            elif step == S_NULL:
                if slot >= 0:
                    out[self.keys[slot]] = None
            elif step == S_BOOLEAN:
                if pos >= n:
                    raise PlainReadError("boolean past the end")
                b = p[pos]
                if b > 1:
                    raise PlainReadError(f"boolean byte {b}")
                if slot >= 0:
                    out[self.keys[slot]] = b == 1
                pos += 1
            elif step == S_DOUBLE:
                if pos + 8 > n:
                    raise PlainReadError("number past the end")
                if slot >= 0:
                    memcpy(&real, p + pos, 8)
                    out[self.keys[slot]] = real
                pos += 8
            elif step == S_FLOAT:
                if pos + 4 > n:
                    raise PlainReadError("number past the end")
                if slot >= 0:
                    memcpy(&single, p + pos, 4)
                    out[self.keys[slot]] = <double> single
                pos += 4
            elif step == S_ENUM:
                symbols = <tuple> self.args[i]
                _long(p, n, &pos, &number)
                if not 0 <= number < len(symbols):
                    raise PlainReadError(f"enum symbol {number} of {len(symbols)}")
                if slot >= 0:
                    out[self.keys[slot]] = symbols[number]
            else:  # S_CLOSURE
                value, pos = self.args[i](buf, pos)
                if slot >= 0:
                    out[self.keys[slot]] = value
            i += 1
        if pos > n:
            raise PlainReadError("the record runs past the end")
        return out, pos


# --- the sketch's add on its plain data ---------------------------------------------------------

cdef double _LOG2 = math.log(2.0)  # as math.log(value, 2) divides: by log(2) computed the same way


# the bins' keys as text, made once each: keys of latencies from 1e-9 ms to 1e9 ms fit
cdef list _KEY_TEXTS = [None] * 8192
cdef long long _KEY_LOW = -4096


cdef object _key_text(long long key):
    cdef long long at = key - _KEY_LOW
    if at < 0 or at >= 8192:
        return str(key)
    text = _KEY_TEXTS[at]
    if text is None:
        text = _KEY_TEXTS[at] = str(key)
    return text


cdef class SketchAdd:
    """``Sketch.add_to_data`` for one mapping (its bound :meth:`add` is the function): the same
    operations in the same order on a float; anything else goes to ``fallback``, the Python one."""

    cdef double min_positive, multiplier, offset
    cdef object fallback

    def __cinit__(self, double min_positive, double multiplier, double offset, fallback):
        self.min_positive, self.multiplier, self.offset = min_positive, multiplier, offset
        self.fallback = fallback

    def add(self, dict data, value):
        if type(value) is not float:
            return self.fallback(data, value)
        cdef double v = value
        cdef dict bins
        if not v >= 0:  # negative or NaN
            raise ValueError(f"a latency must be a non-negative number, not {value!r}")
        if v > self.min_positive:
            bins = data["bins"]
            key = _key_text(<long long> (ceil(log(v) / _LOG2 * self.multiplier) + self.offset))
            found = bins.get(key)
            bins[key] = (0.0 if found is None else found) + 1.0
        else:
            data["zero"] += 1.0
        data["count"] += 1.0
        data["total"] += value
        low = data["low"]
        if low is None or value < low:
            data["low"] = value
        high = data["high"]
        if high is None or value > high:
            data["high"] = value


# --- remembered event ids ----------------------------------------------------------------------

cdef int _compare_ids(const void* a, const void* b) noexcept nogil:
    return memcmp(a, b, 16)


cdef unsigned char _NIBBLE[256]
for _c in range(256):
    _NIBBLE[_c] = (_c - 48) if 48 <= _c <= 57 else (_c - 87) if 97 <= _c <= 102 else 0


def pack_uuids(list ids):
    """The 16 bytes of each id, sorted, as one bytes; None unless every id is a canonical
    (lower-case, dashed) uuid string."""
    cdef Py_ssize_t n = len(ids)
    out = PyBytes_FromStringAndSize(NULL, 16 * n)  # not shared yet: filled and sorted in place
    cdef unsigned char* p = <unsigned char*> PyBytes_AS_STRING(out)
    cdef const unsigned char* text
    cdef Py_ssize_t k
    cdef int j, at
    for k in range(n):
        event_id = ids[k]
        if type(event_id) is not str or not PyUnicode_IS_ASCII(event_id):
            return None
        if PyUnicode_GET_LENGTH(event_id) != 36:
            return None
        text = <const unsigned char*> PyUnicode_DATA(event_id)
        if not _canonical_uuid(text):
            return None
        at = 0
        for j in range(16):
            if at in (8, 13, 18, 23):
                at += 1
            p[16 * k + j] = (_NIBBLE[text[at]] << 4) | _NIBBLE[text[at + 1]]
            at += 2
    with nogil:
        _sort_ids(p, n)
    return out


cdef void _insertion_sort_ids(unsigned char* p, Py_ssize_t n) noexcept nogil:
    cdef unsigned char held[16]
    cdef Py_ssize_t k, j
    for k in range(1, n):
        memcpy(held, p + 16 * k, 16)
        j = k
        while j > 0 and memcmp(p + 16 * (j - 1), held, 16) > 0:
            j -= 1
        if j < k:
            memmove(p + 16 * (j + 1), p + 16 * j, 16 * (k - j))
            memcpy(p + 16 * j, held, 16)


cdef void _sort_ids(unsigned char* p, Py_ssize_t n) noexcept nogil:
    """Sort ``n`` 16-byte ids in place: spread by their first two bytes (a counting sort), then
    each group by insertion (a few ids: random ids spread evenly) or ``qsort``."""
    cdef Py_ssize_t* starts
    cdef unsigned char* scratch
    cdef Py_ssize_t k, size, group
    cdef unsigned int b
    if n < 4096:
        qsort(p, n, 16, _compare_ids)
        return
    starts = <Py_ssize_t*> calloc(65537, sizeof(Py_ssize_t))
    scratch = <unsigned char*> malloc(16 * n)
    if starts == NULL or scratch == NULL:
        free(starts)
        free(scratch)
        qsort(p, n, 16, _compare_ids)
        return
    for k in range(n):
        starts[((p[16 * k] << 8) | p[16 * k + 1]) + 1] += 1
    for b in range(1, 65537):
        starts[b] += starts[b - 1]
    for k in range(n):  # starts[b] moves to the end of group b as it fills
        b = (p[16 * k] << 8) | p[16 * k + 1]
        memcpy(scratch + 16 * starts[b], p + 16 * k, 16)
        starts[b] += 1
    memcpy(p, scratch, 16 * n)
    free(scratch)
    group = 0  # where group b begins: the end of group b - 1
    for b in range(65536):
        size = starts[b] - group
        if size > 32:
            qsort(p + 16 * group, size, 16, _compare_ids)
        elif size > 1:
            _insertion_sort_ids(p + 16 * group, size)
        group = starts[b]
    free(starts)


# --- a plain projection's read of a fetched run ----------------------------------------------

cdef Py_ssize_t _HEADER = 5  # streams.codec.HEADER_SIZE: magic byte and schema id


@cython.boundscheck(True)  # the readers' and the run's tuples come from Python callers
cdef object _read_plain(record, dict readers, Py_ssize_t max_payload, plain_type):
    data = record.value
    if type(data) is not bytes:
        return None
    cdef Py_ssize_t size = PyBytes_GET_SIZE(data)
    if not _HEADER < size <= max_payload:
        return None
    own = readers.get(PyBytes_FromStringAndSize(PyBytes_AS_STRING(data), _HEADER))
    if own is None:
        return None
    try:
        datum, end = own[1](data, _HEADER)
    except Exception:  # the full path raises the codec's error for it
        return None
    if end != size:
        return None
    return tuple.__new__(
        plain_type,
        (own[0], datum, record.topic, record.partition, record.offset, record.timestamp),
    )


def read_plain(record, dict readers, Py_ssize_t max_payload, plain_type):
    """``_decode.python_read_plain``."""
    return _read_plain(record, readers, max_payload, plain_type)


def decode_run(list records, Py_ssize_t i, long long end, long long at, dict readers,
               Py_ssize_t max_payload, plain_type, list run):
    """``_decode.python_decode_run``."""
    cdef Py_ssize_t n = len(records)
    cdef Py_ssize_t count = 0, duplicates = 0
    cdef long long offset
    while i < n:
        record = records[i]
        offset = record.offset
        if offset >= end:
            return i, at, count, duplicates
        count += 1
        if offset < at:
            duplicates += 1
            i += 1
            continue
        at = offset + 1
        plain = _read_plain(record, readers, max_payload, plain_type)
        if plain is None:
            return i, at, count, duplicates
        run.append((record, plain))
        i += 1
    return n, at, count, duplicates


@cython.boundscheck(True)
def dedupe_run(list run, window_ms, bucket_ms, dict ids, dict seen, list todo):
    """``_decode.python_dedupe_run``."""
    cdef Py_ssize_t duplicates = 0
    for pair in run:
        plain = pair[1]  # bounds checked: (record, plain record) pairs from Python
        datum = plain[1]
        event_id = datum["event_id"]
        expires = datum["occurred_at"] // 1000 + window_ms
        found = seen.get(event_id)
        if found is None or found // bucket_ms != expires // bucket_ms:
            found = ids.get(event_id)
            if found is None or found // bucket_ms != expires // bucket_ms:
                seen[event_id] = expires
                todo.append(plain)
                continue
        duplicates += 1
    return duplicates
