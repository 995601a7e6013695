/* SHA-256 of the fixed-size blocks of a file region, hashed where it lies in the page cache.
 *
 * Why C: reading a block (pread) copies it from the page cache into a buffer before hashing; mapping
 * the region and hashing the page cache itself skips that copy. When the cache holds the file in
 * 2 MiB folios (what readahead builds on current kernels), MADV_HUGEPAGE lets the kernel map them
 * with a few PMD entries, and a block costs only the hash: ~13 % less CPU than pread + hash on the
 * machine issue 20 was measured on. Python could map the file too, but a mapped file that shrinks
 * under us, or a disk that fails a read, raises SIGBUS, which kills a Python process. Here the fault
 * is caught (sigsetjmp around the hashing, a SIGBUS handler that jumps back only for a thread that is
 * inside this function) and becomes OSError(EIO), so the caller reports a read error as before.
 *
 * The hashing itself is OpenSSL's SHA-256 (EVP), the same code hashlib runs. The GIL is released for
 * the whole call, so hashing threads run on every core.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define DIGEST_SIZE 32

/* The jump target of this thread while it touches mapped pages; NULL otherwise. */
static __thread sigjmp_buf *volatile fault_target;
static struct sigaction previous_action;
static pthread_once_t install_once = PTHREAD_ONCE_INIT;
static int install_error;
static EVP_MD *sha256;

static void on_sigbus(int signum, siginfo_t *info, void *context)
{
    sigjmp_buf *target = fault_target;
    if (target)
        siglongjmp(*target, 1);
    /* Not a fault of ours: hand the signal back to whoever had it (Python's faulthandler, or the
     * default action) and return, so the faulting access runs again and reaches them. */
    sigaction(SIGBUS, &previous_action, NULL);
    (void)signum, (void)info, (void)context;
}

static void install(void)
{
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_sigbus;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!sha256 || sigaction(SIGBUS, &action, &previous_action) != 0)
        install_error = 1;
}

/* Hash ``length`` bytes at ``map + skip`` in ``block_size`` blocks into ``out``; 0, or -1 on a fault. */
static int hash_blocks(const unsigned char *map, size_t skip, size_t length, size_t block_size,
                       unsigned char *out, EVP_MD_CTX *ctx)
{
    sigjmp_buf env;
    if (sigsetjmp(env, 1)) {
        fault_target = NULL;
        return -1;
    }
    fault_target = &env;
    for (size_t pos = 0; pos < length; pos += block_size) {
        size_t n = length - pos < block_size ? length - pos : block_size;
        unsigned int md_len = 0;
        if (!EVP_DigestInit_ex2(ctx, sha256, NULL) || !EVP_DigestUpdate(ctx, map + skip + pos, n)
            || !EVP_DigestFinal_ex(ctx, out + pos / block_size * DIGEST_SIZE, &md_len)) {
            fault_target = NULL;
            return -2;
        }
    }
    fault_target = NULL;
    return 0;
}

/* hash_mapped(fd, offset, length, block_size, out): the digests of the blocks of the file region
 * [offset, offset + length) written to ``out`` (32 bytes per block, the last block may be short).
 * OSError(EIO) when a page cannot be read (the file shrank, the disk failed); OSError from mmap when
 * the file cannot be mapped (the caller then reads it instead). */
static PyObject *hash_mapped(PyObject *Py_UNUSED(module), PyObject *args)
{
    int fd;
    long long offset, length, block_size;
    Py_buffer out;
    if (!PyArg_ParseTuple(args, "iLLLw*", &fd, &offset, &length, &block_size, &out))
        return NULL;
    long long blocks = block_size > 0 ? (length + block_size - 1) / block_size : 0;
    if (offset < 0 || length <= 0 || block_size <= 0 || out.len != blocks * DIGEST_SIZE) {
        PyBuffer_Release(&out);
        return PyErr_Format(PyExc_ValueError, "bad region or digest buffer");
    }
    pthread_once(&install_once, install);
    if (install_error) {
        PyBuffer_Release(&out);
        return PyErr_Format(PyExc_OSError, "cannot set up mapped hashing");
    }
    long page = sysconf(_SC_PAGESIZE);
    off_t start = (off_t)(offset - offset % page);
    size_t skip = (size_t)(offset - start), span = (size_t)length + skip;
    int rc, saved_errno = 0;
    Py_BEGIN_ALLOW_THREADS
    void *map = mmap(NULL, span, PROT_READ, MAP_SHARED, fd, start);
    if (map == MAP_FAILED) {
        saved_errno = errno;
        rc = -3;
    } else {
        madvise(map, span, MADV_HUGEPAGE); /* a hint: 2 MiB page-cache folios mapped whole */
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        rc = ctx ? hash_blocks(map, skip, (size_t)length, (size_t)block_size, out.buf, ctx) : -2;
        EVP_MD_CTX_free(ctx);
        munmap(map, span);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&out);
    if (rc == -1) {
        errno = EIO;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (rc == -3) {
        errno = saved_errno;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (rc == -2)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"hash_mapped", hash_mapped, METH_VARARGS,
     "hash_mapped(fd, offset, length, block_size, out): SHA-256 of each block of a mapped file region."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "app.catalog._maphash",
    .m_doc = "SHA-256 of file blocks hashed in the page cache, SIGBUS-safe (see _maphash.c).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__maphash(void) { return PyModule_Create(&module); }
