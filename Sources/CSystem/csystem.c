// See csystem.h. _GNU_SOURCE gives the real declarations of the GNU calls,
// so they are called by name, not through syscall(2).
#define _GNU_SOURCE
#include "csystem.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/fsuid.h>
#include <syslog.h>
#include <unistd.h>
#include <linux/capability.h>

_Static_assert(CSYS_O_PATH == O_PATH, "O_PATH");
_Static_assert(CSYS_O_DIRECT == O_DIRECT, "O_DIRECT");
_Static_assert(CSYS_O_NOATIME == O_NOATIME, "O_NOATIME");
_Static_assert(CSYS_AT_EMPTY_PATH == AT_EMPTY_PATH, "AT_EMPTY_PATH");
_Static_assert(CSYS_RENAME_NOREPLACE == RENAME_NOREPLACE, "RENAME_NOREPLACE");
_Static_assert(CSYS_RENAME_EXCHANGE == RENAME_EXCHANGE, "RENAME_EXCHANGE");
_Static_assert(CSYS_SEEK_DATA == SEEK_DATA, "SEEK_DATA");
_Static_assert(CSYS_SEEK_HOLE == SEEK_HOLE, "SEEK_HOLE");
_Static_assert(CSYS_UTIME_NOW == UTIME_NOW, "UTIME_NOW");
_Static_assert(CSYS_UTIME_OMIT == UTIME_OMIT, "UTIME_OMIT");
_Static_assert(sizeof(struct csys_file_handle) == sizeof(struct file_handle) + CSYS_HANDLE_MAX, "file_handle layout");

int csys_name_to_handle(int dirfd, const char *name, struct csys_file_handle *fh, int flags) {
    fh->handle_bytes = CSYS_HANDLE_MAX;
    int mount_id;
    if (name_to_handle_at(dirfd, name, (struct file_handle *)fh, &mount_id, flags) != 0) return -1;
    return (int)(sizeof(struct file_handle) + fh->handle_bytes);
}

int csys_open_by_handle(int mountfd, const struct csys_file_handle *fh, int flags) {
    return open_by_handle_at(mountfd, (struct file_handle *)fh, flags);
}

ssize_t csys_copy_file_range(int fd_in, off_t *off_in, int fd_out, off_t *off_out, size_t len, unsigned flags) {
    return copy_file_range(fd_in, off_in, fd_out, off_out, len, flags);
}

int csys_fallocate(int fd, int mode, off_t off, off_t len) { return fallocate(fd, mode, off, len); }

int csys_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned flags) {
    return renameat2(olddirfd, oldpath, newdirfd, newpath, flags);
}

int csys_start_writeback(int fd) { return sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE); }

int csys_set_thread_name(const char *name) { return prctl(PR_SET_NAME, name, 0, 0, 0); }

void csys_syslog(int priority, const char *message) { syslog(priority, "%s", message); }

int csys_become(uid_t uid, gid_t gid) {
    setfsgid(gid);
    setfsuid(uid);
    // glibc wraps neither capget nor capset.
    struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &hdr, data) != 0) return -1;
    data[0].effective |= (1u << CAP_DAC_OVERRIDE) | (1u << CAP_DAC_READ_SEARCH);
    data[0].effective &= data[0].permitted;
    return (int)syscall(SYS_capset, &hdr, data);
}

void csys_unbecome(uid_t uid, gid_t gid) {
    setfsuid(uid);
    setfsgid(gid);
}
