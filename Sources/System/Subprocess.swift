// Running a helper program to its end (losetup, mkfs, mount, faultfs itself)
// with its output captured: the one place that spawns and reaps for that.
import Glibc

public enum Subprocess {
    public struct Result: Sendable {
        /// The exit status, or 128 + the signal that ended it; 127 if it could not start.
        public var status: Int32
        /// stdout and stderr together, as the program wrote them.
        public var output: String
    }

    /// Runs `argv` (argv[0] looked up in PATH unless it has a slash) with
    /// stdin from /dev/null, and waits for it.
    public static func run(_ argv: [String]) -> Result {
        guard let program = argv.first else { return Result(status: 127, output: "no program given") }
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { return Result(status: 127, output: "pipe: \(Errno.current)") }
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }  // dup2 in the child clears it on 1 and 2
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, ends[1], STDOUT_FILENO)
        posix_spawn_file_actions_adddup2(&actions, ends[1], STDERR_FILENO)
        posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0)
        let cargv = argv.map { strdup($0) } + [nil]
        defer { cargv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, program, &actions, nil, cargv, environ)
        close(ends[1])
        defer { close(ends[0]) }
        guard rc == 0 else { return Result(status: 127, output: "cannot start \(program): \(Errno(rc))") }
        let bytes = (try? File.read(fd: ends[0], limit: 64 << 20)) ?? []
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return Result(status: code, output: String(decoding: bytes, as: UTF8.self))
    }
}
