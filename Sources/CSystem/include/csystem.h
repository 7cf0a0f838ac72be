// CSystem: the Linux calls Swift cannot reach through its Glibc module
// (glibc declares them only with _GNU_SOURCE, which that module is built
// without) and the kernel constants it does not import. Nothing of libfuse.
// The definitions are in csystem.c, compiled with _GNU_SOURCE; it also checks
// every constant below against glibc's own.
#ifndef CSYSTEM_H
#define CSYSTEM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
// Declarations Swift's Glibc module leaves out: extended attributes, malloc_trim.
#include <sys/xattr.h>
#include <malloc.h>

// MARK: constants (GNU-only macros, or macros Swift does not import)

enum {
    CSYS_O_PATH = 010000000,
    CSYS_O_DIRECT = 040000,
    CSYS_O_NOATIME = 01000000,
    CSYS_AT_EMPTY_PATH = 0x1000,
    CSYS_RENAME_NOREPLACE = 1,
    CSYS_RENAME_EXCHANGE = 2,
    CSYS_SEEK_DATA = 3,
    CSYS_SEEK_HOLE = 4,
    CSYS_UTIME_NOW = (1 << 30) - 1,
    CSYS_UTIME_OMIT = (1 << 30) - 2,
};

// MARK: file handles (no fd per remembered inode)

enum { CSYS_HANDLE_MAX = 128 };

/// The kernel's struct file_handle with room for CSYS_HANDLE_MAX bytes, inline.
struct csys_file_handle {
    unsigned int handle_bytes;
    int handle_type;
    unsigned char f_handle[CSYS_HANDLE_MAX];
};

/// The handle of `name` under `dirfd` (flags: AT_EMPTY_PATH; a final symlink
/// is never followed without AT_SYMLINK_FOLLOW). Returns the handle's length
/// in bytes (header included), or -1 with errno.
int csys_name_to_handle(int dirfd, const char *name, struct csys_file_handle *fh, int flags);
int csys_open_by_handle(int mountfd, const struct csys_file_handle *fh, int flags);

// MARK: GNU-only calls (each returns what glibc's returns, errno set on failure)

ssize_t csys_copy_file_range(int fd_in, off_t *off_in, int fd_out, off_t *off_out, size_t len, unsigned flags);
int csys_fallocate(int fd, int mode, off_t off, off_t len);
int csys_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned flags);
/// sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE): start writeback, do not wait.
int csys_start_writeback(int fd);
/// prctl(PR_SET_NAME): the calling thread's name (comm), at most 15 bytes.
int csys_set_thread_name(const char *name);
/// syslog(3) is variadic: Swift cannot call it.
void csys_syslog(int priority, const char *message);

// MARK: per-thread credentials (create as the caller)

/// Switches this thread's filesystem uid/gid to the caller's, keeping the
/// DAC override capabilities: the kernel already checked permissions with the
/// caller's full credentials (default_permissions), the backing file system
/// must only give new inodes the caller's ownership.
int csys_become(uid_t uid, gid_t gid);
/// Back to the daemon's own fs credentials (restores the effective caps).
void csys_unbecome(uid_t uid, gid_t gid);

#endif
