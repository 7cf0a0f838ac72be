// Starting and waiting for processes without fork() (unsafe in a Swift
// process with threads): posix_spawn, with signals reset in the child.
import Glibc
import System

public enum Spawn {
    /// Starts `argv` (argv[0] searched in PATH unless it has a '/').
    /// `env` entries are added to (or replace) our environment. When
    /// `captureStdout` (`captureStderr`) is set, the returned fd reads the
    /// child's stdout (stderr).
    public static func start(_ argv: [String], env: [String: String] = [:], captureStdout: Bool = false,
                             captureStderr: Bool = false,
                             newSession: Bool = false) -> (pid: pid_t, stdout: Int32?, stderr: Int32?, error: String?) {
        guard !argv.isEmpty else { return (0, nil, nil, "empty command") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var pipeFDs: [Int32] = [-1, -1]
        var errPipeFDs: [Int32] = [-1, -1]
        for (wanted, target) in [(captureStdout, STDOUT_FILENO), (captureStderr, STDERR_FILENO)] where wanted {
            var fds: [Int32] = [-1, -1]
            guard pipe(&fds) == 0 else {
                for fd in pipeFDs where fd >= 0 { close(fd) }
                return (0, nil, nil, "pipe: \(Errno.current.description)")
            }
            for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            posix_spawn_file_actions_adddup2(&actions, fds[1], target)
            if target == STDOUT_FILENO { pipeFDs = fds } else { errPipeFDs = fds }
        }
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGQUIT] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attr, &defaults)
        var flags = Int32(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
        if newSession { flags |= 0x80 } // POSIX_SPAWN_SETSID (glibc)
        posix_spawnattr_setflags(&attr, Int16(flags))

        var environment: [String] = []
        var p = environ
        while let entry = p.pointee {
            let s = String(cString: entry)
            let key = s.prefix { $0 != "=" }
            if env[String(key)] == nil { environment.append(s) }
            p += 1
        }
        for (k, v) in env.sorted(by: { $0.key < $1.key }) { environment.append("\(k)=\(v)") }

        let cargv = argv.map { strdup($0) } + [nil]
        let cenv = environment.map { strdup($0) } + [nil]
        defer { cargv.forEach { free($0) }; cenv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = cargv.withUnsafeBufferPointer { a in
            cenv.withUnsafeBufferPointer { e in
                posix_spawnp(&pid, argv[0], &actions, &attr, UnsafePointer(a.baseAddress!).withMemoryRebound(to: UnsafeMutablePointer<CChar>?.self, capacity: a.count) { UnsafeMutablePointer(mutating: $0) },
                             UnsafePointer(e.baseAddress!).withMemoryRebound(to: UnsafeMutablePointer<CChar>?.self, capacity: e.count) { UnsafeMutablePointer(mutating: $0) })
            }
        }
        for fd in [pipeFDs[1], errPipeFDs[1]] where fd >= 0 { close(fd) }
        guard rc == 0 else {
            for fd in [pipeFDs[0], errPipeFDs[0]] where fd >= 0 { close(fd) }
            return (0, nil, nil, "cannot start \(argv[0]): \(Errno(rc).description)")
        }
        return (pid, captureStdout ? pipeFDs[0] : nil, captureStderr ? errPipeFDs[0] : nil, nil)
    }

    /// Exit status in words and the code to exit with (128+N for a signal).
    public static func describe(_ status: Int32) -> (text: String, code: Int32?, exitCode: Int32) {
        let sig = status & 0x7f
        if sig == 0 {
            let code = (status >> 8) & 0xff
            return ("exited \(code)", code, code)
        }
        return ("killed by signal \(sig)", nil, 128 + sig)
    }

    /// Non-blocking wait: the raw status if the child has exited.
    public static func poll(_ pid: pid_t) -> Int32? {
        var status: Int32 = 0
        let r = waitpid(pid, &status, WNOHANG)
        return r == pid ? status : nil
    }

    /// Blocking wait with a bound; nil on timeout.
    public static func wait(_ pid: pid_t, timeoutNs: Int64) -> Int32? {
        let end = SystemClock.monotonicNanoseconds() + timeoutNs
        while SystemClock.monotonicNanoseconds() < end {
            if let s = poll(pid) { return s }
            SystemClock.sleep(nanoseconds: 10_000_000)
        }
        return nil
    }

    /// Runs to completion; returns (status, stdout+stderr not captured).
    public static func runToEnd(_ argv: [String], timeoutNs: Int64 = 60_000_000_000) -> Int32? {
        let s = start(argv)
        guard s.error == nil else { return nil }
        if let st = wait(s.pid, timeoutNs: timeoutNs) { return st }
        kill(s.pid, SIGKILL)
        return wait(s.pid, timeoutNs: 5_000_000_000)
    }

    /// Pids of `pid` and all its descendants (via /proc/PID/task/*/children).
    public static func tree(_ pid: pid_t) -> [pid_t] {
        var out: [pid_t] = []
        var queue = [pid]
        while let p = queue.popLast(), out.count < 4096 {
            out.append(p)
            for t in File.names(inDirectory: "/proc/\(p)/task") ?? [] where t.first?.isNumber == true {
                for c in (File.readText("/proc/\(p)/task/\(t)/children") ?? "").split(separator: " ") {
                    if let c = pid_t(c.trimmingBlanks) { queue.append(c) }
                }
            }
        }
        return out
    }
}
