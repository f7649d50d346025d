/*
 * The interior levels of an RFC 6962 Merkle tree, hashed in C.
 *
 * Recomputing a root from n leaf hashes takes n - 1 node hashes of 65 bytes. In Python each one
 * costs a call, two concatenations and a hash object (~400 ns), more than hashing the event
 * itself; here each costs one SHA-256 of 65 bytes (OpenSSL, with the CPU's SHA extensions when
 * present). The GIL is released while hashing. audit.merkle falls back to pure Python when this
 * module was not built; both are checked against each other by the tests.
 *
 * leaf_hashes_of_lines hashes every line of a block of an export's events.jsonl the same way
 * (SHA-256(0x00 || line), RFC 6962 leaf): the offline verifier checks a million events, and
 * one Python call, one concatenation and one hash object per line cost more than the hash.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>

#define HASH 32

static PyObject *
root_of_leaf_hashes(PyObject *Py_UNUSED(module), PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (view.len == 0 || view.len % HASH != 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "expected one or more concatenated 32-byte hashes");
        return NULL;
    }
    Py_ssize_t n = view.len / HASH;
    unsigned char *level = PyMem_RawMalloc((size_t)view.len);
    if (level == NULL) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    memcpy(level, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);

    Py_BEGIN_ALLOW_THREADS
    unsigned char node[1 + 2 * HASH];
    node[0] = 0x01; /* RFC 6962 node prefix */
    while (n > 1) {
        Py_ssize_t pairs = n / 2;
        for (Py_ssize_t i = 0; i < pairs; i++) {
            /* The low-level calls, not SHA256(): in OpenSSL 3 the one-shot fetches the
             * algorithm from the provider on every call, which costs more than the hash. */
            SHA256_CTX ctx;
            memcpy(node + 1, level + 2 * HASH * i, 2 * HASH);
            SHA256_Init(&ctx);
            SHA256_Update(&ctx, node, sizeof node);
            SHA256_Final(level + HASH * i, &ctx);
        }
        if (n & 1) {
            /* A lone last node is promoted unchanged (left-complete tree). */
            memmove(level + HASH * pairs, level + HASH * (n - 1), HASH);
        }
        n = pairs + (n & 1);
    }
    Py_END_ALLOW_THREADS

    PyObject *root = PyBytes_FromStringAndSize((const char *)level, HASH);
    PyMem_RawFree(level);
    return root;
}

static PyObject *
leaf_hashes_of_lines(PyObject *Py_UNUSED(module), PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    const unsigned char *data = view.buf;
    Py_ssize_t len = view.len;
    if (len == 0 || data[len - 1] != '\n') {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "expected one or more lines, each ending in \\n");
        return NULL;
    }
    Py_ssize_t lines = 0;
    for (const unsigned char *p = data; (p = memchr(p, '\n', (size_t)(data + len - p))) != NULL;
         p++) {
        lines++;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, lines * HASH);
    if (out == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    unsigned char *hashes = (unsigned char *)PyBytes_AS_STRING(out);
    static const unsigned char leaf_prefix = 0x00; /* RFC 6962 leaf prefix */

    Py_BEGIN_ALLOW_THREADS
    const unsigned char *start = data;
    for (Py_ssize_t i = 0; i < lines; i++) {
        const unsigned char *end = memchr(start, '\n', (size_t)(data + len - start));
        SHA256_CTX ctx;
        SHA256_Init(&ctx);
        SHA256_Update(&ctx, &leaf_prefix, 1);
        SHA256_Update(&ctx, start, (size_t)(end - start));
        SHA256_Final(hashes + HASH * i, &ctx);
        start = end + 1;
    }
    Py_END_ALLOW_THREADS

    PyBuffer_Release(&view);
    return out;
}

static PyMethodDef methods[] = {
    {"root_of_leaf_hashes", root_of_leaf_hashes, METH_O,
     "RFC 6962 Merkle tree hash of n >= 1 concatenated 32-byte leaf hashes."},
    {"leaf_hashes_of_lines", leaf_hashes_of_lines, METH_O,
     "RFC 6962 leaf hash of every line (without its \\n) of a block ending in \\n, "
     "concatenated."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "audit._fastmerkle",
    "Leaves and interior levels of an RFC 6962 Merkle tree, hashed in C.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__fastmerkle(void)
{
    return PyModule_Create(&module);
}
