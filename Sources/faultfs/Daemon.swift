// Going to the background without fork(): forking a Swift process (runtime
// locks, threads) is unsafe, so the command re-executes itself in the
// foreground with `--ready-fd N` and waits on a pipe until the child says the
// mount answers ("R") or why it failed ("E<message>").
import Glibc
import System
import Synchronization

enum Daemon {
    /// How long the parent waits for the mount to answer.
    static let readinessTimeout: Int32 = 60

    /// Starts our own executable with `<arguments(N)>`, N being the pipe's write end,
    /// and returns once the mount is live; throws the child's error otherwise.
    static func startAndWait(arguments: (_ readyFD: Int32) -> [String]) throws(CLIError) {
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { throw CLIError("pipe: \(Errno.current.description)") }
        let (readEnd, writeEnd) = (ends[0], ends[1])
        defer { close(readEnd) }
        // Only the write end may reach the child: a daemon holding, say, the
        // write end of its caller's output pipe would keep that caller waiting.
        closeOnExec(allAbove: STDERR_FILENO, except: writeEnd)

        let argv = (["faultfs"] + arguments(writeEnd)).map { strdup($0) }
        defer { argv.forEach { free($0) } }
        var cargv: [UnsafeMutablePointer<CChar>?] = argv + [nil]
        var pid: pid_t = 0
        // The resolved path, not /proc/self/exe: the daemon's name (comm, as
        // traces and ps show it) comes from the file name.
        let executable = ProcFS.selfExecutable()
        let rc = cargv.withUnsafeMutableBufferPointer {
            posix_spawn(&pid, executable, nil, nil, $0.baseAddress!, environ)
        }
        close(writeEnd) // so the pipe reaches EOF when the child is gone
        guard rc == 0 else { throw CLIError("cannot start the daemon: \(Errno(rc).description)") }

        let reply = readReply(readEnd, timeoutSeconds: readinessTimeout)
        switch reply {
        case .some(let text) where text.hasPrefix("R"):
            return
        case .some(let text) where text.hasPrefix("E"):
            reap(pid)
            throw CLIError(String(text.dropFirst()))
        case .some:
            throw CLIError("the daemon exited before the mount was ready (\(reap(pid)))")
        case .none:
            kill(pid, SIGTERM)
            throw CLIError("the mount did not answer within \(readinessTimeout) s; stopped the daemon (pid \(pid))")
        }
    }

    private static func closeOnExec(allAbove lowest: Int32, except kept: Int32) {
        // The listing's own fd is in the list, closed by now: setting a flag on it is harmless.
        for fd in (File.names(inDirectory: "/proc/self/fd") ?? []).compactMap({ Int32($0) }) where fd > lowest && fd != kept {
            _ = fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC)
        }
    }

    /// Everything the child writes until it closes the pipe, or nil on timeout.
    private static func readReply(_ fd: Int32, timeoutSeconds: Int32) -> String? {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        var deadline = timeoutSeconds * 1000
        while true {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, 1000)
            if ready < 0 && errno != EINTR { break }
            if ready <= 0 {
                deadline -= 1000
                if deadline <= 0 { return nil }
                continue
            }
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes += buffer[0..<n]
            if bytes.first == UInt8(ascii: "R") { break } // ready: no need to wait for EOF
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Waits for a failed child and describes how it ended.
    @discardableResult
    private static func reap(_ pid: pid_t) -> String {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let signal = status & 0x7f
        return signal == 0 ? "exit status \((status >> 8) & 0xff)" : "killed by signal \(signal)"
    }

    // MARK: the child's side

    /// Leaves the caller's session and working directory, so the daemon
    /// survives the terminal and pins no directory that someone may unmount.
    /// stdout and stderr stay until the mount is ready: libfuse prints its
    /// own mount errors there, and the user should see them.
    /// The signals that end the mount get their default action back: a
    /// shell starts background jobs with SIGINT ignored, and libfuse only
    /// installs its handlers over the default.
    static func detach() {
        for signal in [SIGINT, SIGTERM, SIGHUP] { _ = Glibc.signal(signal, SIG_DFL) }
        _ = setsid()
        _ = chdir("/")
        redirectToDevNull([STDIN_FILENO])
    }

    /// Once the mount is live nobody reads our terminal any more.
    static func silenceOutput() {
        redirectToDevNull([STDOUT_FILENO, STDERR_FILENO])
    }

    private static func redirectToDevNull(_ fds: [Int32]) {
        let null = open("/dev/null", O_RDWR)
        guard null >= 0 else { return }
        for fd in fds { _ = dup2(null, fd) }
        if !fds.contains(null) { close(null) }
    }
}

/// The child's end of the readiness pipe. Says "ready" or "failed" exactly once.
final class ReadyPipe: Sendable {
    private let fd: Int32
    private let answered = Atomic<Bool>(false)

    init(fd: Int32) {
        self.fd = fd
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC) // nothing we start should keep the parent waiting
    }

    func ready() { send("R") }
    func fail(_ message: String) { send("E" + message) }

    private func send(_ text: String) {
        guard !answered.exchange(true, ordering: .acquiringAndReleasing) else { return }
        _ = text.utf8CString.withUnsafeBytes { write(fd, $0.baseAddress, $0.count - 1) }
        close(fd)
    }
}
