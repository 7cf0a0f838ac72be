// The root command. `faultfs SOURCE MOUNTPOINT -o ...` (no subcommand) means
// `mount`, because that is how mount(8) calls a FUSE helper for
// `mount -t fuse.faultfs SOURCE MOUNTPOINT` (through mount.fuse3).
import ArgumentParser
import MonitorCore
import System

@main
struct FaultFS: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "faultfs",
        abstract: "A FUSE passthrough file system that will inject write, writeback and fsync errors.",
        discussion: """
            mount(8) and fstab (type fuse.faultfs) run faultfs through mount.fuse3,
            from PATH: the Debian package installs /usr/bin/faultfs; from source,
            install -m755 .build/release/faultfs /usr/local/bin/.
            The control language (.faultfs/control): faultfs-control(5).
            """,
        version: BuildInfo.versionLine,
        subcommands: [MountCommand.self, UnmountCommand.self, ControlCommand.self, CrashCommand.self, MonitorCommand.self, RunCommand.self, ReportCommand.self, DemoCommand.self, DemoWriterCommand.self],
        defaultSubcommand: MountCommand.self)
}

extension BuildInfo {
    /// What `faultfs --version` prints.
    static var versionLine: String { "faultfs \(version) (commit \(commit))" }
    /// The run folder's and report's record of the build (faultfs run, monitor, demo).
    static var settings: [Setting] { [Setting("faultfs.version", version), Setting("faultfs.commit", commit)] }
}

/// A failure the user can act on: printed as one line "faultfs: <message>", exit status 1.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Runs a command body, turning a `CLIError` into its one-line message and exit status 1
/// (ArgumentParser would print "Error: ..." followed by the usage).
func reportingFailures(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as CLIError {
        printError("faultfs: \(error.description)")
        throw ExitCode.failure
    }
}
