/* The TTLV decoder of keyquorum.kmip.ttlv, in C.
 *
 * Theory of operation
 * -------------------
 * ttlv.py's pure-Python ``_decode`` is the reference: this file implements the same
 * rules, checked in the same order, and raises with the same messages, so that
 * either decoder returns equal items or both refuse the input. The differential
 * tests in tests/kmip/test_ttlv_accel.py hold the two to that.
 *
 * The loop is the Python one. It walks the bytes once with an explicit stack of open
 * Structures (never recursion, so a hostile nesting cannot exhaust the C stack; the
 * depth limit bounds the stack). Every finished item is pushed on one scratch array
 * of values; when a Structure closes, its items are the top of that array, and they
 * move into a list of exactly their number. On error the scratch array is the only
 * thing that owns references, so cleaning up is one loop.
 *
 * Items are built the way CPython builds a tuple subclass: tp_alloc(Item, 3), then
 * the three fields set in place. ttlv.py hands over the Item class and the ItemType
 * members once, through ``setup``.
 *
 * Malformed input raises ``DecodeError`` with a message that says what is wrong and
 * at which offset; ttlv.py turns it into KmipError (Invalid Message). Anything else
 * that escapes (MemoryError) is not about the input.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define STRUCTURE 0x01
#define INTEGER 0x02
#define LONG_INTEGER 0x03
#define BIG_INTEGER 0x04
#define ENUMERATION 0x05
#define BOOLEAN 0x06
#define TEXT_STRING 0x07
#define BYTE_STRING 0x08
#define DATE_TIME 0x09
#define INTERVAL 0x0A
#define DATE_TIME_EXTENDED 0x0B
#define TYPE_COUNT 12 /* type codes 1 to 11; slot 0 is unused */

/* Tags 0x42xxxx are KMIP's own, 0x54xxxx reserved for extensions (KMIP 1.4 9.1.3.1). */
#define KMIP_TAG_SPACE 0x42
#define EXTENSION_TAG_SPACE 0x54

/* The value length each fixed-size type must declare; 0 where the length varies. */
static const uint32_t FIXED_LENGTHS[TYPE_COUNT] = {
    [INTEGER] = 4,
    [LONG_INTEGER] = 8,
    [ENUMERATION] = 4,
    [BOOLEAN] = 8,
    [DATE_TIME] = 8,
    [INTERVAL] = 4,
    [DATE_TIME_EXTENDED] = 8,
};

/* Room for the items and open Structures of a typical request without touching the
 * heap; deeper or wider messages grow onto it. */
#define INLINE_VALUES 128
#define INLINE_FRAMES 16

typedef struct {
    PyTypeObject *item_class;            /* ttlv.Item, a tuple subclass */
    PyObject *item_types[TYPE_COUNT];    /* ttlv.ItemType members by type code */
    PyObject *decode_error;              /* DecodeError, raised on malformed input */
} module_state;

/* One open Structure: its tag, where its parent's value ends, and where its own
 * items start on the scratch array. */
typedef struct {
    uint32_t tag;
    int64_t parent_end;
    Py_ssize_t first_value;
} frame;

/* The scratch arrays of one decode call. */
typedef struct {
    PyObject **values;
    Py_ssize_t value_count;
    Py_ssize_t value_capacity;
    frame *frames;
    Py_ssize_t frame_count;
    Py_ssize_t frame_capacity;
    PyObject *inline_values[INLINE_VALUES];
    frame inline_frames[INLINE_FRAMES];
} scratch;

static inline module_state *
get_state(PyObject *module)
{
    return (module_state *)PyModule_GetState(module);
}

static inline uint32_t
read_u32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline uint64_t
read_u64(const unsigned char *p)
{
    return (uint64_t)read_u32(p) << 32 | read_u32(p + 4);
}

/* Raise DecodeError with a printf-style message. Always returns NULL. */
static PyObject *
malformed(module_state *state, const char *format, ...)
{
    char message[160];
    va_list arguments;

    va_start(arguments, format);
    vsnprintf(message, sizeof message, format, arguments);
    va_end(arguments);
    PyErr_SetString(state->decode_error, message);
    return NULL;
}

/* A new Item(tag, item_types[type_code], value); steals ``value`` even on failure. */
static PyObject *
new_item(module_state *state, uint32_t tag, int type_code, PyObject *value)
{
    PyObject *tag_object = PyLong_FromUnsignedLong(tag);
    if (tag_object == NULL) {
        Py_DECREF(value);
        return NULL;
    }
    PyObject *item = state->item_class->tp_alloc(state->item_class, 3);
    if (item == NULL) {
        Py_DECREF(tag_object);
        Py_DECREF(value);
        return NULL;
    }
    PyTuple_SET_ITEM(item, 0, tag_object);
    PyTuple_SET_ITEM(item, 1, Py_NewRef(state->item_types[type_code]));
    PyTuple_SET_ITEM(item, 2, value);
#if PY_VERSION_HEX >= 0x030E0000
    /* From 3.14 a tuple caches its hash; tp_alloc zeroed it, -1 means "not yet". */
    ((PyTupleObject *)item)->ob_hash = -1;
#endif
    return item;
}

/* Grow one of the scratch arrays, moving it to the heap the first time. */
static int
grow(void **array, Py_ssize_t *capacity, size_t element_size, void *inline_array)
{
    Py_ssize_t new_capacity = *capacity * 2;
    void *grown;

    if (*array == inline_array) {
        grown = PyMem_Malloc((size_t)new_capacity * element_size);
        if (grown != NULL) {
            memcpy(grown, *array, (size_t)*capacity * element_size);
        }
    }
    else {
        grown = PyMem_Realloc(*array, (size_t)new_capacity * element_size);
    }
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *array = grown;
    *capacity = new_capacity;
    return 0;
}

/* Push a finished item; steals it even on failure. */
static inline int
push_value(scratch *work, PyObject *item)
{
    if (work->value_count == work->value_capacity
        && grow((void **)&work->values, &work->value_capacity, sizeof(PyObject *),
                work->inline_values) < 0) {
        Py_DECREF(item);
        return -1;
    }
    work->values[work->value_count++] = item;
    return 0;
}

/* Close the innermost Structure: its items leave the scratch array for its list. */
static PyObject *
close_structure(module_state *state, scratch *work)
{
    frame *open = &work->frames[--work->frame_count];
    Py_ssize_t count = work->value_count - open->first_value;
    PyObject *children = PyList_New(count);
    if (children == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyList_SET_ITEM(children, i, work->values[open->first_value + i]);
    }
    work->value_count = open->first_value;
    return new_item(state, open->tag, STRUCTURE, children);
}

/* The value of one non-Structure item whose bytes are data[start:start + length]. */
static PyObject *
decode_value(module_state *state, const unsigned char *data, int64_t start, uint32_t length,
             int type_code)
{
    const unsigned char *value = data + start;
    PyObject *text;
    uint64_t flag;

    switch (type_code) {
    case TEXT_STRING:
        text = PyUnicode_DecodeUTF8((const char *)value, (Py_ssize_t)length, NULL);
        if (text == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            PyErr_Clear();
            return malformed(state, "text string at offset %lld is not UTF-8",
                             (long long)(start - 8));
        }
        return text;
    case INTEGER:
        return PyLong_FromLong((long)(int32_t)read_u32(value));
    case ENUMERATION:
    case INTERVAL:
        return PyLong_FromUnsignedLong(read_u32(value));
    case BYTE_STRING:
        return PyBytes_FromStringAndSize((const char *)value, (Py_ssize_t)length);
    case LONG_INTEGER:
    case DATE_TIME:
    case DATE_TIME_EXTENDED:
        return PyLong_FromLongLong((long long)(int64_t)read_u64(value));
    case BOOLEAN:
        flag = read_u64(value);
        if (flag > 1) {
            return malformed(state, "boolean at offset %lld is neither 0 nor 1",
                             (long long)(start - 8));
        }
        return Py_NewRef(flag ? Py_True : Py_False);
    case BIG_INTEGER:
        /* Two's complement, sign-extended to a multiple of 8 bytes: no padding. */
        if (length == 0 || length & 7) {
            return malformed(state, "big integer at offset %lld has length %lu",
                             (long long)(start - 8), (unsigned long)length);
        }
#if PY_VERSION_HEX >= 0x030D0000
        return PyLong_FromNativeBytes(value, length, Py_ASNATIVEBYTES_BIG_ENDIAN);
#else
        return _PyLong_FromByteArray(value, length, 0, 1);
#endif
    default:
        return malformed(state, "unknown item type 0x%02X at offset %lld", (unsigned)type_code,
                         (long long)(start - 8));
    }
}

/* Decode the one item that data[0:size] must hold. Mirrors ttlv._decode step by step. */
static PyObject *
decode_message(module_state *state, scratch *work, const unsigned char *data, int64_t size,
               long long max_depth, long long max_items)
{
    int64_t pos = 0;
    int64_t end = size;
    long long budget = max_items;

    for (;;) {
        /* First, close every Structure whose value ends here. */
        if (pos == end) {
            if (work->frame_count == 0) {
                break;
            }
            end = work->frames[work->frame_count - 1].parent_end;
            PyObject *structure = close_structure(state, work);
            if (structure == NULL || push_value(work, structure) < 0) {
                return NULL;
            }
            continue;
        }

        /* Then read the next item's header. */
        if (end - pos < 8) {
            return malformed(state, "truncated item header at offset %lld", (long long)pos);
        }
        uint32_t tag_and_type = read_u32(data + pos);
        uint32_t length = read_u32(data + pos + 4);
        uint32_t tag = tag_and_type >> 8;
        int type_code = (int)(tag_and_type & 0xFF);
        if (tag >> 16 != KMIP_TAG_SPACE && tag >> 16 != EXTENSION_TAG_SPACE) {
            return malformed(state, "tag 0x%06lX at offset %lld is not a KMIP tag",
                             (unsigned long)tag, (long long)pos);
        }
        budget -= 1;
        if (budget < 0) {
            return malformed(state, "message holds more than %lld items", max_items);
        }
        int64_t start = pos + 8;

        /* A Structure opens a new level; its items are read by the loop. */
        if (type_code == STRUCTURE) {
            if (length & 7) {
                return malformed(state, "structure length %lu at offset %lld is not aligned",
                                 (unsigned long)length, (long long)pos);
            }
            if (start + (int64_t)length > end) {
                return malformed(state, "structure at offset %lld overruns its parent",
                                 (long long)pos);
            }
            if (work->frame_count >= max_depth) {
                return malformed(state, "structures nest deeper than %lld", max_depth);
            }
            if (work->frame_count == work->frame_capacity
                && grow((void **)&work->frames, &work->frame_capacity, sizeof(frame),
                        work->inline_frames) < 0) {
                return NULL;
            }
            frame *open = &work->frames[work->frame_count++];
            open->tag = tag;
            open->parent_end = end;
            open->first_value = work->value_count;
            end = start + (int64_t)length;
            pos = start;
            continue;
        }

        /* Any other type is one value, padded with zeros to a multiple of 8. */
        pos = start + (((int64_t)length + 7) & ~(int64_t)7);
        if (pos > end) {
            return malformed(state, "item at offset %lld overruns its parent",
                             (long long)(start - 8));
        }
        uint32_t expected = type_code < TYPE_COUNT ? FIXED_LENGTHS[type_code] : 0;
        if (expected != 0 && length != expected) {
            return malformed(state, "item type 0x%02X at offset %lld has length %lu",
                             (unsigned)type_code, (long long)(start - 8), (unsigned long)length);
        }
        for (int64_t i = start + (int64_t)length; i < pos; i++) {
            if (data[i] != 0) {
                return malformed(state, "non-zero padding at offset %lld",
                                 (long long)(start + (int64_t)length));
            }
        }
        PyObject *value = decode_value(state, data, start, length, type_code);
        if (value == NULL) {
            return NULL;
        }
        PyObject *item = new_item(state, tag, type_code, value);
        if (item == NULL || push_value(work, item) < 0) {
            return NULL;
        }
    }

    if (work->value_count != 1) {
        return malformed(state, "trailing bytes after the message");
    }
    work->value_count = 0;
    return work->values[0];
}

/* An int argument as a long long; beyond that range a limit is as good as infinite. */
static int
limit_argument(PyObject *argument, long long *limit)
{
    int overflow;

    *limit = PyLong_AsLongLongAndOverflow(argument, &overflow);
    if (overflow > 0) {
        *limit = LLONG_MAX;
    }
    else if (overflow < 0) {
        *limit = LLONG_MIN;
    }
    return *limit == -1 && PyErr_Occurred() ? -1 : 0;
}

PyDoc_STRVAR(decode_doc,
"decode(data, max_message_size, max_depth, max_items, /)\n--\n\n"
"Decode the one TTLV item that the bytes ``data`` hold, as ttlv._decode does.\n"
"Raises DecodeError if they are malformed or exceed a limit.");

static PyObject *
decode(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    module_state *state = get_state(module);
    long long max_message_size, max_depth, max_items;

    /* First, check the arguments and that ttlv.py has called setup. */
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "decode() takes 4 arguments (%zd given)", nargs);
        return NULL;
    }
    if (!PyBytes_Check(args[0])) {
        PyErr_Format(PyExc_TypeError, "decode() needs bytes, not %.100s",
                     Py_TYPE(args[0])->tp_name);
        return NULL;
    }
    if (limit_argument(args[1], &max_message_size) < 0
        || limit_argument(args[2], &max_depth) < 0
        || limit_argument(args[3], &max_items) < 0) {
        return NULL;
    }
    if (state->item_class == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "decode() before setup()");
        return NULL;
    }

    /* Then refuse an oversized message unread, as decode_item does. */
    Py_ssize_t size = PyBytes_GET_SIZE(args[0]);
    if (size > max_message_size) {
        return malformed(state, "message of %zd bytes exceeds the limit of %lld", size,
                         max_message_size);
    }

    /* Decode; on failure drop every item the scratch array still holds. */
    scratch work;
    work.values = work.inline_values;
    work.value_count = 0;
    work.value_capacity = INLINE_VALUES;
    work.frames = work.inline_frames;
    work.frame_count = 0;
    work.frame_capacity = INLINE_FRAMES;
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    PyObject *result = decode_message(state, &work, data, (int64_t)size, max_depth, max_items);
    for (Py_ssize_t i = 0; i < work.value_count; i++) {
        Py_DECREF(work.values[i]);
    }
    if (work.values != work.inline_values) {
        PyMem_Free(work.values);
    }
    if (work.frames != work.inline_frames) {
        PyMem_Free(work.frames);
    }
    return result;
}

PyDoc_STRVAR(setup_doc,
"setup(item_class, item_types, /)\n--\n\n"
"Give the decoder ttlv.Item and the ItemType members in type-code order (1 to 11).");

static PyObject *
setup(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    module_state *state = get_state(module);

    /* First, check that Item is a plain tuple subclass: tp_alloc(Item, 3) must make
     * exactly what tuple.__new__(Item, ...) makes. */
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "setup() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *item_class = args[0];
    PyObject *item_types = args[1];
    if (!PyType_Check(item_class)
        || !PyType_IsSubtype((PyTypeObject *)item_class, &PyTuple_Type)
        || ((PyTypeObject *)item_class)->tp_basicsize != PyTuple_Type.tp_basicsize
        || ((PyTypeObject *)item_class)->tp_itemsize != PyTuple_Type.tp_itemsize) {
        PyErr_SetString(PyExc_TypeError, "setup() needs a tuple subclass without fields");
        return NULL;
    }

    /* Then check that the types are the members for codes 1 to 11, in order. */
    if (!PyTuple_Check(item_types) || PyTuple_GET_SIZE(item_types) != TYPE_COUNT - 1) {
        PyErr_SetString(PyExc_TypeError, "setup() needs a tuple of the 11 item types");
        return NULL;
    }
    for (Py_ssize_t code = 1; code < TYPE_COUNT; code++) {
        PyObject *member = PyTuple_GET_ITEM(item_types, code - 1);
        long value = PyLong_Check(member) ? PyLong_AsLong(member) : -1;
        if (value == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (value != code) {
            PyErr_Format(PyExc_ValueError, "item type %zd is not type code %zd", code - 1, code);
            return NULL;
        }
    }

    /* Keep them. */
    Py_XSETREF(state->item_class, (PyTypeObject *)Py_NewRef(item_class));
    for (Py_ssize_t code = 1; code < TYPE_COUNT; code++) {
        Py_XSETREF(state->item_types[code], Py_NewRef(PyTuple_GET_ITEM(item_types, code - 1)));
    }
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"decode", (PyCFunction)(void (*)(void))decode, METH_FASTCALL, decode_doc},
    {"setup", (PyCFunction)(void (*)(void))setup, METH_FASTCALL, setup_doc},
    {NULL, NULL, 0, NULL},
};

static int
module_exec(PyObject *module)
{
    module_state *state = get_state(module);

    state->decode_error = PyErr_NewExceptionWithDoc(
        "keyquorum.kmip._ttlv_accel.DecodeError",
        "Malformed TTLV; ttlv.py turns it into KmipError (Invalid Message).", NULL, NULL);
    if (state->decode_error == NULL) {
        return -1;
    }
    return PyModule_AddObjectRef(module, "DecodeError", state->decode_error);
}

static int
module_traverse(PyObject *module, visitproc visit, void *arg)
{
    module_state *state = get_state(module);

    Py_VISIT(state->item_class);
    for (int code = 0; code < TYPE_COUNT; code++) {
        Py_VISIT(state->item_types[code]);
    }
    Py_VISIT(state->decode_error);
    return 0;
}

static int
module_clear(PyObject *module)
{
    module_state *state = get_state(module);

    Py_CLEAR(state->item_class);
    for (int code = 0; code < TYPE_COUNT; code++) {
        Py_CLEAR(state->item_types[code]);
    }
    Py_CLEAR(state->decode_error);
    return 0;
}

static void
module_free(void *module)
{
    module_clear((PyObject *)module);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "keyquorum.kmip._ttlv_accel",
    .m_doc = "The C TTLV decoder; keyquorum.kmip.ttlv's Python decoder is the reference.",
    .m_size = sizeof(module_state),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC
PyInit__ttlv_accel(void)
{
    return PyModuleDef_Init(&module_def);
}
