// CFuse: libfuse 3.14's low-level API for FuseKit, and nothing else (the
// system calls libfuse does not make are CSystem's). Supplies what Swift
// cannot import: bitfields and macros as static inline functions (the ones on
// the read/write path stay inline), and, in cfuse.c, the session set-up and
// the /dev/fuse I/O hooks with the INIT state they keep (one definition).
#ifndef CFUSE_H
#define CFUSE_H

#define FUSE_USE_VERSION 314
// No _GNU_SOURCE here: the headers must parse as in Swift's Glibc module.

#include <fuse3/fuse_lowlevel.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

// MARK: fuse_file_info bitfields

static inline int ffs_fi_writepage(const struct fuse_file_info *fi) { return fi->writepage; }
static inline int ffs_fi_flush(const struct fuse_file_info *fi) { return fi->flush; }
static inline void ffs_fi_set_direct_io(struct fuse_file_info *fi, int v) { fi->direct_io = v ? 1 : 0; }
static inline void ffs_fi_set_keep_cache(struct fuse_file_info *fi, int v) { fi->keep_cache = v ? 1 : 0; }
static inline void ffs_fi_set_cache_readdir(struct fuse_file_info *fi, int v) { fi->cache_readdir = v ? 1 : 0; }
static inline void ffs_fi_set_noflush(struct fuse_file_info *fi, int v) { fi->noflush = v ? 1 : 0; }
static inline void ffs_fi_set_nonseekable(struct fuse_file_info *fi, int v) { fi->nonseekable = v ? 1 : 0; }

// MARK: session (versioned symbols behind macros)

struct fuse_session *ffs_session_new(int argc, char **argv, const struct fuse_lowlevel_ops *ops, void *userdata);

/// Runs the multi-threaded loop (no clone_fd). Returns its result or -ENOMEM.
int ffs_session_loop_mt(struct fuse_session *se, unsigned max_idle, unsigned max_threads);

// MARK: stop signals (see cfuse.c)

/// Installs the daemon's SIGINT/SIGTERM/SIGHUP handlers (and ignores
/// SIGPIPE) for the process's life. Call it on the thread that runs the
/// session loop: a signal another thread receives is passed on to it.
/// Returns 0 or a negative errno.
int ffs_install_stop_handlers(void);

/// The session a stop signal ends from now on (NULL: none; the signal is
/// still remembered). Ends `se` at once if a signal already came.
void ffs_stop_signal_ends(struct fuse_session *se);

/// A stop signal no longer ends `se` (if it was the one).
void ffs_stop_signal_forget(struct fuse_session *se);

/// The last stop signal received, or 0.
int ffs_stop_signal(void);

// MARK: buffers

/// A one-element bufvec describing `size` bytes of `fd` at `off` (splice-able).
static inline struct fuse_bufvec ffs_bufvec_fd(int fd, size_t size, off_t off) {
    struct fuse_bufvec v = FUSE_BUFVEC_INIT(size);
    v.buf[0].flags = (enum fuse_buf_flags)(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
    v.buf[0].fd = fd;
    v.buf[0].pos = off;
    return v;
}

/// A one-element bufvec over memory.
static inline struct fuse_bufvec ffs_bufvec_mem(const void *mem, size_t size) {
    struct fuse_bufvec v = FUSE_BUFVEC_INIT(size);
    v.buf[0].mem = (void *)mem;
    return v;
}

/// Copies at most `limit` bytes of `src` to `fd` at `off` (pwrite or splice).
static inline ssize_t ffs_bufvec_copy_to_fd(struct fuse_bufvec *src, int fd, off_t off, size_t limit) {
    size_t n = fuse_buf_size(src);
    if (limit < n) n = limit;
    struct fuse_bufvec dst = ffs_bufvec_fd(fd, n, off);
    return fuse_buf_copy(&dst, src, FUSE_BUF_SPLICE_NONBLOCK);
}

/// Copies at most `size` bytes of `src` into memory.
static inline ssize_t ffs_bufvec_copy_to_mem(struct fuse_bufvec *src, void *mem, size_t size) {
    struct fuse_bufvec dst = ffs_bufvec_mem(mem, size);
    return fuse_buf_copy(&dst, src, (enum fuse_buf_copy_flags)0);
}

static inline int ffs_reply_data_fd(fuse_req_t req, int fd, size_t size, off_t off, int splice) {
    struct fuse_bufvec v = ffs_bufvec_fd(fd, size, off);
    return fuse_reply_data(req, &v, splice ? FUSE_BUF_SPLICE_MOVE : FUSE_BUF_NO_SPLICE);
}

// MARK: connection I/O (init flags libfuse 3.14 cannot ask for; see cfuse.c)

/// Routes the session's /dev/fuse I/O through cfuse.c's hooks (call after
/// fuse_session_mount). Returns 0 or a negative errno.
int ffs_install_io(struct fuse_session *se);

/// Whether the kernel runs this connection with FUSE_HANDLE_KILLPRIV_V2.
int ffs_killpriv_v2_enabled(void);

/// Whether shared mmap of direct_io files is allowed (FUSE_DIRECT_IO_ALLOW_MMAP).
int ffs_direct_io_mmap_enabled(void);

#endif
