import Glibc

public enum Path {
    /// `path` made absolute (against the working directory) and cleaned of
    /// "." and ".." without touching the file system: a dead FUSE mount
    /// answers every stat with ENOTCONN, so realpath cannot resolve it, yet
    /// `umount` must still name it.
    public static func absolute(_ path: String) -> String {
        var full = path
        if !path.hasPrefix("/") {
            var cwd = "/"
            if let buffer = getcwd(nil, 0) {
                cwd = String(cString: buffer)
                free(buffer)
            }
            full = cwd + "/" + path
        }
        var parts: [Substring] = []
        for part in full.split(separator: "/") {
            switch part {
            case ".": continue
            case "..": _ = parts.popLast()
            default: parts.append(part)
            }
        }
        return "/" + parts.joined(separator: "/")
    }

    /// `path` resolved to an absolute path without symlinks (realpath(3)).
    public static func canonical(_ path: String) throws(Errno) -> String {
        guard let resolved = realpath(path, nil) else { throw .current }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
