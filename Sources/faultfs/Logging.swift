// Where log lines go: stderr in the foreground, else `--log FILE`, else
// syslog (a daemon's stderr is /dev/null).
import Glibc
import Logging
import System

enum LogDestination: Equatable {
    case standardError
    case file(String)
    case syslog
}

/// The process-wide logger (swift-log's bootstrap runs once, at start).
nonisolated(unsafe) var logger = Logger(label: "faultfs")

/// Installs the handler for `destination`. Throws if the log file cannot be opened.
func setUpLogging(_ destination: LogDestination, level: Logger.Level = .info) throws(CLIError) {
    switch destination {
    case .standardError:
        LoggingSystem.bootstrap { _ in LineLogHandler(sink: .file(STDERR_FILENO)) }
    case .file(let path):
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw CLIError("cannot open log file \(path): \(Errno.current.description)") }
        LoggingSystem.bootstrap { _ in LineLogHandler(sink: .file(fd)) }
    case .syslog:
        openlog("faultfs", LOG_PID, LOG_DAEMON)
        LoggingSystem.bootstrap { _ in LineLogHandler(sink: .syslog) }
    }
    logger = Logger(label: "faultfs")
    logger.logLevel = level
}

/// Where a log line goes: a file (stderr included), as one line per event
/// written with a single write(2) so lines from several threads never
/// interleave ("2025-01-31T12:00:00Z [1234] info: message"), or syslog.
struct LineLogHandler: LogHandler {
    enum Sink { case file(Int32), syslog }
    let sink: Sink
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        switch sink {
        case .file(let fd):
            var line = "\(timestamp()) [\(getpid())] \(event.level): \(event.message)"
            let all = metadata.merging(event.metadata ?? [:]) { $1 }
            if !all.isEmpty { line += " " + all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ") }
            line += "\n"
            line.withUTF8 { _ = try? File.writeAll(fd: fd, UnsafeRawBufferPointer($0)) }
        case .syslog:
            let priority: Int32 = switch event.level {
            case .trace, .debug: LOG_DEBUG
            case .info: LOG_INFO
            case .notice: LOG_NOTICE
            case .warning: LOG_WARNING
            case .error: LOG_ERR
            case .critical: LOG_CRIT
            }
            csys_syslog(priority, "\(event.message)")
        }
    }

    private func timestamp() -> String {
        var now = time(nil)
        var parts = tm()
        gmtime_r(&now, &parts)
        var buffer = [UInt8](repeating: 0, count: 32)
        let length = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%SZ", &parts)
        return String(decoding: buffer[..<length], as: UTF8.self)
    }
}
