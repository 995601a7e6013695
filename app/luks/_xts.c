/* AES-XTS-plain64 over many sectors in one call: the bulk cipher of a LUKS2 data segment.
 *
 * Why C: OpenSSL's XTS treats every update as one data unit with the IV given at init, and a LUKS
 * sector is a data unit with an IV of its own. From Python, a new cipher context per 4 KiB sector
 * costs more than the AES; NumPy can fake per-sector tweaks over one long data unit, but that spent
 * ~4x the AES on mask arithmetic. Here the loop just re-sets the IV of one context (no key schedule)
 * and encrypts the sector: what dm-crypt does in the kernel.
 *
 * The module is deliberately tiny and stateless apart from the context: the key lives only in the
 * OpenSSL context (EVP_CIPHER_CTX_free cleanses it), which Python holds as a capsule. The GIL is
 * released during the loop, so lanes on other threads encrypt at the same time; one context must not
 * be used by two threads at once (app.luks.xts lends each thread a lane of its own).
 *
 * plain64 IV: the sector number in 512-byte units, as a 64-bit little-endian integer in the first
 * 8 of the 16 IV bytes (wrapping at 2^64), the rest zero.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <string.h>

static const char CAPSULE_NAME[] = "app.luks._xts.context";

static PyObject *openssl_error(const char *what)
{
    unsigned long code = ERR_get_error();
    char reason[256] = "unknown error";
    if (code)
        ERR_error_string_n(code, reason, sizeof reason);
    ERR_clear_error();
    return PyErr_Format(PyExc_ValueError, "%s: %s", what, reason);
}

static void free_context(PyObject *capsule)
{
    EVP_CIPHER_CTX *ctx = PyCapsule_GetPointer(capsule, CAPSULE_NAME);
    if (ctx)
        EVP_CIPHER_CTX_free(ctx);
}

/* context(key, encrypt) -> capsule: an AES-128/256-XTS context keyed with both halves of ``key``. */
static PyObject *xts_context(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer key;
    int encrypt;
    if (!PyArg_ParseTuple(args, "y*p", &key, &encrypt))
        return NULL;
    const char *name = key.len == 64 ? "AES-256-XTS" : key.len == 32 ? "AES-128-XTS" : NULL;
    if (!name) {
        PyBuffer_Release(&key);
        return PyErr_Format(PyExc_ValueError, "an AES-XTS key is 32 or 64 bytes");
    }
    EVP_CIPHER *cipher = EVP_CIPHER_fetch(NULL, name, NULL);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    static const unsigned char zero_iv[16];
    int ok = cipher && ctx && EVP_CipherInit_ex2(ctx, cipher, key.buf, zero_iv, encrypt, NULL);
    EVP_CIPHER_free(cipher); /* the context keeps its own reference */
    PyBuffer_Release(&key);
    if (!ok) {
        EVP_CIPHER_CTX_free(ctx);
        return openssl_error("cannot set up AES-XTS");
    }
    PyObject *capsule = PyCapsule_New(ctx, CAPSULE_NAME, free_context);
    if (!capsule)
        EVP_CIPHER_CTX_free(ctx);
    return capsule;
}

/* crypt(ctx, src, dst, sector_size, first_iv): dst[:len(src)] = XTS of src, sector by sector. */
static PyObject *xts_crypt(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *capsule;
    Py_buffer src, dst;
    Py_ssize_t sector_size;
    unsigned long long first_iv;
    if (!PyArg_ParseTuple(args, "Oy*w*nK", &capsule, &src, &dst, &sector_size, &first_iv))
        return NULL;
    EVP_CIPHER_CTX *ctx = PyCapsule_GetPointer(capsule, CAPSULE_NAME);
    const char *problem = NULL;
    if (!ctx)
        problem = "not an XTS context";
    else if (sector_size < 512 || sector_size % 512 || src.len % sector_size)
        problem = "the data must be whole sectors (a multiple of 512 bytes each)";
    else if (dst.len < src.len)
        problem = "output buffer too small";
    else if (dst.buf != src.buf && (const char *)dst.buf < (const char *)src.buf + src.len &&
             (const char *)src.buf < (const char *)dst.buf + src.len)
        problem = "input and output overlap";
    if (problem) {
        PyBuffer_Release(&src);
        PyBuffer_Release(&dst);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, problem);
        return NULL;
    }
    const unsigned char *in = src.buf;
    unsigned char *out = dst.buf;
    const uint64_t step = (uint64_t)sector_size / 512;
    uint64_t iv_number = first_iv;
    int ok = 1;
    Py_BEGIN_ALLOW_THREADS
    unsigned char iv[16] = {0};
    for (Py_ssize_t pos = 0; ok && pos < src.len; pos += sector_size, iv_number += step) {
        for (int i = 0; i < 8; i++)
            iv[i] = (unsigned char)(iv_number >> (8 * i));
        int outl = 0;
        ok = EVP_CipherInit_ex2(ctx, NULL, NULL, iv, -1, NULL) &&
             EVP_CipherUpdate(ctx, out + pos, &outl, in + pos, (int)sector_size) && outl == sector_size;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    if (!ok)
        return openssl_error("AES-XTS failed");
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"context", xts_context, METH_VARARGS, "context(key, encrypt) -> an AES-XTS context (capsule)."},
    {"crypt", xts_crypt, METH_VARARGS,
     "crypt(ctx, src, dst, sector_size, first_iv): XTS-plain64 of whole sectors, GIL released."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "_xts",
    .m_doc = "AES-XTS-plain64 over many sectors per call (see _xts.c).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__xts(void) { return PyModule_Create(&module); }
