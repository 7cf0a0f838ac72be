// C shim for faultfs: selects the libfuse 3.14 API and supplies, as static
// inline functions, what Swift cannot import (macros, bitfields, versioned
// symbols, variadic or flexible-array helpers, per-thread credentials).
#ifndef FAULTFS_SHIM_H
#define FAULTFS_SHIM_H

#define FUSE_USE_VERSION 314
// No _GNU_SOURCE here: the headers must parse as in Swift's Glibc module.
// The GNU-only calls we need are made through syscall(2) below.

#include <fuse3/fuse_lowlevel.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dirent.h>
#include <malloc.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <sys/mount.h>
#include <sys/uio.h>
#include <stdint.h>
#include <linux/capability.h>

// MARK: fuse_file_info bitfields

static inline int ffs_fi_writepage(const struct fuse_file_info *fi) { return fi->writepage; }
static inline int ffs_fi_flush(const struct fuse_file_info *fi) { return fi->flush; }
static inline void ffs_fi_set_direct_io(struct fuse_file_info *fi, int v) { fi->direct_io = v ? 1 : 0; }
static inline void ffs_fi_set_keep_cache(struct fuse_file_info *fi, int v) { fi->keep_cache = v ? 1 : 0; }
static inline void ffs_fi_set_cache_readdir(struct fuse_file_info *fi, int v) { fi->cache_readdir = v ? 1 : 0; }
static inline void ffs_fi_set_noflush(struct fuse_file_info *fi, int v) { fi->noflush = v ? 1 : 0; }
static inline void ffs_fi_set_nonseekable(struct fuse_file_info *fi, int v) { fi->nonseekable = v ? 1 : 0; }

// MARK: session (versioned symbols behind macros)

static inline struct fuse_session *ffs_session_new(int argc, char **argv,
        const struct fuse_lowlevel_ops *ops, void *userdata) {
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    struct fuse_session *se = fuse_session_new(&args, ops, sizeof(*ops), userdata);
    fuse_opt_free_args(&args);
    return se;
}

static inline int ffs_session_loop_mt(struct fuse_session *se, unsigned max_idle, unsigned max_threads) {
    struct fuse_loop_config *cfg = fuse_loop_cfg_create();
    if (!cfg) return -ENOMEM;
    fuse_loop_cfg_set_clone_fd(cfg, 0);
    fuse_loop_cfg_set_idle_threads(cfg, max_idle);
    fuse_loop_cfg_set_max_threads(cfg, max_threads);
    int rc = fuse_session_loop_mt(se, cfg);
    fuse_loop_cfg_destroy(cfg);
    return rc;
}

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

// MARK: times

static inline long ffs_utime_now(void) { return UTIME_NOW; }
static inline long ffs_utime_omit(void) { return UTIME_OMIT; }

// MARK: file handles (no fd per remembered inode)

enum { FFS_HANDLE_MAX = 128 };

/// The kernel's struct file_handle (fcntl.h declares it only with _GNU_SOURCE).
struct ffs_file_handle {
    unsigned int handle_bytes;
    int handle_type;
    unsigned char f_handle[FFS_HANDLE_MAX];
};

/// The handle of `name` under `dirfd` (flags: AT_EMPTY_PATH; a final symlink
/// is never followed without AT_SYMLINK_FOLLOW). Returns the handle's length
/// in bytes (header included), or -1 with errno.
static inline int ffs_name_to_handle(int dirfd, const char *name, struct ffs_file_handle *fh, int flags) {
    fh->handle_bytes = FFS_HANDLE_MAX;
    int mount_id;
    if (syscall(SYS_name_to_handle_at, dirfd, name, fh, &mount_id, flags) != 0) return -1;
    return (int)(8 + fh->handle_bytes);
}

static inline int ffs_open_by_handle(int mountfd, const struct ffs_file_handle *fh, int flags) {
    return (int)syscall(SYS_open_by_handle_at, mountfd, fh, flags);
}

static inline ssize_t ffs_copy_file_range(int fd_in, off_t *off_in, int fd_out, off_t *off_out, size_t len, unsigned flags) {
    return syscall(SYS_copy_file_range, fd_in, off_in, fd_out, off_out, len, flags);
}

static inline int ffs_fallocate(int fd, int mode, off_t off, off_t len) {
    return (int)syscall(SYS_fallocate, fd, mode, off, len);
}

static inline int ffs_syncfs(int fd) { return (int)syscall(SYS_syncfs, fd); }

enum {
    FFS_O_PATH = 010000000,
    FFS_O_DIRECT = 040000,
    FFS_O_NOATIME = 01000000,
    FFS_AT_EMPTY_PATH = 0x1000,
    FFS_RENAME_NOREPLACE = 1,
    FFS_RENAME_EXCHANGE = 2,
    FFS_SEEK_DATA = 3,
    FFS_SEEK_HOLE = 4,
};

// MARK: per-thread credentials (create as the caller)

/// Switches this thread's filesystem uid/gid to the caller's, keeping the
/// DAC override capabilities: the kernel already checked permissions with the
/// caller's full credentials (default_permissions), the backing file system
/// must only give new inodes the caller's ownership.
static inline int ffs_become(uid_t uid, gid_t gid) {
    syscall(SYS_setfsgid, gid);
    syscall(SYS_setfsuid, uid);
    struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &hdr, data) != 0) return -1;
    data[0].effective |= (1u << CAP_DAC_OVERRIDE) | (1u << CAP_DAC_READ_SEARCH);
    data[0].effective &= data[0].permitted;
    return (int)syscall(SYS_capset, &hdr, data);
}

/// Back to the daemon's own fs credentials (restores the effective caps).
static inline void ffs_unbecome(uid_t uid, gid_t gid) {
    syscall(SYS_setfsuid, uid);
    syscall(SYS_setfsgid, gid);
}

static inline int ffs_errno(void) { return errno; }
static inline void ffs_set_errno(int e) { errno = e; }

static inline int ffs_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned flags) {
    return (int)syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, flags);
}

// MARK: connection I/O (init flags libfuse 3.14 cannot ask for)
//
// libfuse 3.14 knows neither FUSE_HANDLE_KILLPRIV_V2 nor
// FUSE_DIRECT_IO_ALLOW_MMAP. These hooks see the INIT request, remember what
// the kernel offers, and add the flags to libfuse's INIT reply:
// - KILLPRIV_V2: without it the kernel asks the daemon for
//   "security.capability" before *every* write(2), a round trip that costs a
//   writeback-cache mount most of its small-write speed. With it the kernel
//   leaves clearing setuid/setgid bits to the daemon (the passthrough does).
// - DIRECT_IO_ALLOW_MMAP (Linux >= 6.6): shared mmap of a file opened with
//   FOPEN_DIRECT_IO (faultfs serves O_DIRECT opens so), ENODEV otherwise.

enum {
    FFS_FUSE_INIT = 26,
    FFS_KILLPRIV_V2 = 1 << 28,
    FFS_INIT_EXT = 1 << 30,
    /// Bit 36 of the 64-bit init flags: bit 4 of flags2.
    FFS_DIRECT_IO_ALLOW_MMAP2 = 1 << 4,
};

/// What the kernel offered in INIT (flags, flags2) and what the reply asked for.
struct ffs_init_state { int seen; int answered; uint32_t offered, offered2, asked, asked2; };
static inline struct ffs_init_state *ffs_init_state(void) { static struct ffs_init_state state; return &state; }

static inline ssize_t ffs_io_read(int fd, void *buf, size_t len, void *userdata) {
    (void)userdata;
    ssize_t n = read(fd, buf, len);
    struct ffs_init_state *st = ffs_init_state();
    // fuse_in_header is 40 bytes; fuse_init_in's flags are at offset 12,
    // flags2 (with FUSE_INIT_EXT) at 16.
    if (!st->seen && n >= 56) {
        uint32_t opcode;
        memcpy(&opcode, (char *)buf + 4, 4);
        if (opcode == FFS_FUSE_INIT) {
            memcpy(&st->offered, (char *)buf + 40 + 12, 4);
            if ((st->offered & FFS_INIT_EXT) && n >= 60) memcpy(&st->offered2, (char *)buf + 40 + 16, 4);
            st->seen = 1;
        }
    }
    return n;
}

static inline ssize_t ffs_io_writev(int fd, struct iovec *iov, int count, void *userdata) {
    (void)userdata;
    struct ffs_init_state *st = ffs_init_state();
    // The first reply is INIT's: fuse_out_header, then fuse_init_out whose
    // flags are at offset 12 and flags2 at offset 32.
    if (st->seen && !st->answered && count >= 2 && iov[1].iov_len >= 16) {
        uint32_t flags;
        memcpy(&flags, (char *)iov[1].iov_base + 12, 4);
        flags |= st->offered & FFS_KILLPRIV_V2;
        if ((st->offered2 & FFS_DIRECT_IO_ALLOW_MMAP2) && iov[1].iov_len >= 36) {
            uint32_t flags2;
            memcpy(&flags2, (char *)iov[1].iov_base + 32, 4);
            flags2 |= FFS_DIRECT_IO_ALLOW_MMAP2;
            memcpy((char *)iov[1].iov_base + 32, &flags2, 4);
            flags |= FFS_INIT_EXT;
            st->asked2 = flags2;
        }
        memcpy((char *)iov[1].iov_base + 12, &flags, 4);
        st->asked = flags;
        st->answered = 1;
    }
    return writev(fd, iov, count);
}

static inline ssize_t ffs_io_splice(int fdin, off_t *offin, int fdout, off_t *offout,
                                    size_t len, unsigned int flags, void *userdata) {
    (void)userdata;
    return syscall(SYS_splice, fdin, offin, fdout, offout, len, flags);
}

/// Routes the session's /dev/fuse I/O through the hooks above (call after
/// fuse_session_mount). Returns 0 or a negative errno.
static inline int ffs_install_io(struct fuse_session *se) {
    static const struct fuse_custom_io io = {
        .writev = ffs_io_writev, .read = ffs_io_read,
        .splice_receive = ffs_io_splice, .splice_send = ffs_io_splice,
    };
    return fuse_session_custom_io(se, &io, fuse_session_fd(se));
}

/// Whether the kernel runs this connection with FUSE_HANDLE_KILLPRIV_V2.
static inline int ffs_killpriv_v2_enabled(void) { return (ffs_init_state()->asked & FFS_KILLPRIV_V2) != 0; }

/// Whether shared mmap of direct_io files is allowed (FUSE_DIRECT_IO_ALLOW_MMAP).
static inline int ffs_direct_io_mmap_enabled(void) { return (ffs_init_state()->asked2 & FFS_DIRECT_IO_ALLOW_MMAP2) != 0; }

// MARK: CLI helpers

#include <syslog.h>

/// syslog(3) is variadic: Swift cannot call it.
static inline void ffs_syslog(int prio, const char *msg) { syslog(prio, "%s", msg); }

/// The process environment (declared by unistd.h only with _GNU_SOURCE),
/// for posix_spawn when faultfs re-executes itself as its daemon.
static inline char **ffs_environ(void) { extern char **environ; return environ; }

#endif
