// Temp files and directories for the tests, in one place: under the run's
// folder when mount-scripts/test made one, so that a test process that
// crashes or is killed (its deferred clean-ups never run) leaves nothing
// behind once the script removes that folder.

import Glibc
import System

/// $FAULTFS_TEST_TMP (one folder per `mount-scripts/test` run, removed with
/// whatever is left in it at the end), else /tmp.
public let scratchRoot: String = {
    guard let value = getenv("FAULTFS_TEST_TMP"), value.pointee != 0 else { return "/tmp" }
    return String(cString: value)
}()

/// A new, empty directory `scratchRoot/faultfs-PREFIX.XXXXXX` (mode 0700).
public func makeScratchDirectory(_ prefix: String) throws(Errno) -> String {
    var template = Array("\(scratchRoot)/faultfs-\(prefix).XXXXXX".utf8CString)
    guard mkdtemp(&template) != nil else { throw Errno.current }
    return path(template)
}

/// A new, empty file `scratchRoot/faultfs-PREFIX.XXXXXX`, open read-write.
public func makeScratchFile(_ prefix: String) throws(Errno) -> (fd: Int32, path: String) {
    var template = Array("\(scratchRoot)/faultfs-\(prefix).XXXXXX".utf8CString)
    let fd = mkstemp(&template)
    guard fd >= 0 else { throw Errno.current }
    return (fd, path(template))
}

/// The path mkdtemp or mkstemp filled in (a NUL-terminated template).
private func path(_ template: [CChar]) -> String {
    String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
