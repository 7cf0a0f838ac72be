// See cfuse.h. _GNU_SOURCE for splice(2).
#define _GNU_SOURCE
#include "cfuse.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>
#include <sys/uio.h>

// MARK: session (versioned symbols behind macros)

struct fuse_session *ffs_session_new(int argc, char **argv, const struct fuse_lowlevel_ops *ops, void *userdata) {
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    struct fuse_session *se = fuse_session_new(&args, ops, sizeof(*ops), userdata);
    fuse_opt_free_args(&args);
    return se;
}

int ffs_session_loop_mt(struct fuse_session *se, unsigned max_idle, unsigned max_threads) {
    struct fuse_loop_config *cfg = fuse_loop_cfg_create();
    if (!cfg) return -ENOMEM;
    fuse_loop_cfg_set_clone_fd(cfg, 0);
    fuse_loop_cfg_set_idle_threads(cfg, max_idle);
    fuse_loop_cfg_set_max_threads(cfg, max_threads);
    int rc = fuse_session_loop_mt(se, cfg);
    fuse_loop_cfg_destroy(cfg);
    return rc;
}

// MARK: stop signals
//
// The daemon's handlers for SIGINT, SIGTERM and SIGHUP, installed once for
// its whole life (libfuse's are tied to one session): a power-loss crash
// replaces the session, and a signal that comes between the old session's
// end and the new one's start must still stop the daemon.

static struct fuse_session *_Atomic signal_session;
static volatile sig_atomic_t stop_signal;

/// The thread that runs the session loop (and waits in it for the workers).
static pthread_t serving_thread;

static void ffs_stop_handler(int sig) {
    stop_signal = sig;
    struct fuse_session *se = atomic_load(&signal_session);
    if (se) fuse_session_exit(se);
    // The kernel hands a process's signal to any thread; only the serving
    // thread's wait (or a worker's read) ends the loop on EINTR, so pass
    // it on from any other thread (a watcher in poll, say).
    if (!pthread_equal(pthread_self(), serving_thread)) pthread_kill(serving_thread, sig);
}

int ffs_install_stop_handlers(void) {
    serving_thread = pthread_self();
    struct sigaction stop = {0}, ignore = {0};
    stop.sa_handler = ffs_stop_handler;  // no SA_RESTART: the loop's read(2) must see EINTR
    sigemptyset(&stop.sa_mask);
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    if (sigaction(SIGHUP, &stop, NULL) != 0 || sigaction(SIGINT, &stop, NULL) != 0 ||
        sigaction(SIGTERM, &stop, NULL) != 0 || sigaction(SIGPIPE, &ignore, NULL) != 0) return -errno;
    // A parent may have started us with them blocked (a mask is inherited
    // across exec): this thread takes them.
    sigset_t stops;
    sigemptyset(&stops);
    sigaddset(&stops, SIGHUP);
    sigaddset(&stops, SIGINT);
    sigaddset(&stops, SIGTERM);
    return -pthread_sigmask(SIG_UNBLOCK, &stops, NULL);
}

void ffs_stop_signal_ends(struct fuse_session *se) {
    atomic_store(&signal_session, se);
    if (se && stop_signal) fuse_session_exit(se);  // it came while no session ran
}

void ffs_stop_signal_forget(struct fuse_session *se) {
    atomic_compare_exchange_strong(&signal_session, &se, NULL);
}

int ffs_stop_signal(void) { return stop_signal; }

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
/// One per process, as one session runs at a time; cleared when a session's
/// I/O is installed, written once by the loop thread that reads INIT, before
/// any request is served.
static struct ffs_init_state init_state;

static ssize_t ffs_io_read(int fd, void *buf, size_t len, void *userdata) {
    (void)userdata;
    ssize_t n = read(fd, buf, len);
    struct ffs_init_state *st = &init_state;
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

static ssize_t ffs_io_writev(int fd, struct iovec *iov, int count, void *userdata) {
    (void)userdata;
    struct ffs_init_state *st = &init_state;
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

static ssize_t ffs_io_splice(int fdin, off_t *offin, int fdout, off_t *offout,
                             size_t len, unsigned int flags, void *userdata) {
    (void)userdata;
    return splice(fdin, offin, fdout, offout, len, flags);
}

/// Routes the session's /dev/fuse I/O through the hooks above (call after
/// fuse_session_mount). Returns 0 or a negative errno.
int ffs_install_io(struct fuse_session *se) {
    // A new session (after a crash) negotiates again.
    memset(&init_state, 0, sizeof init_state);
    static const struct fuse_custom_io io = {
        .writev = ffs_io_writev, .read = ffs_io_read,
        .splice_receive = ffs_io_splice, .splice_send = ffs_io_splice,
    };
    return fuse_session_custom_io(se, &io, fuse_session_fd(se));
}

/// Whether the kernel runs this connection with FUSE_HANDLE_KILLPRIV_V2.
int ffs_killpriv_v2_enabled(void) { return (init_state.asked & FFS_KILLPRIV_V2) != 0; }

/// Whether shared mmap of direct_io files is allowed (FUSE_DIRECT_IO_ALLOW_MMAP).
int ffs_direct_io_mmap_enabled(void) { return (init_state.asked2 & FFS_DIRECT_IO_ALLOW_MMAP2) != 0; }

