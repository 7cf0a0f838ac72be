// Writes BuildInfo.swift (the version and the git commit) before every build
// of the target that uses it, so `faultfs --version` names the commit it was
// built from and the binary needs no git at run time. A prebuild command
// runs at each build; the script rewrites the file only when its text
// changes, so an unchanged checkout recompiles nothing.
import Foundation
import PackagePlugin

@main
struct BuildInfoPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let output = context.pluginWorkDirectoryURL.appending(path: "generated")
        let repository = context.package.directoryURL
        return [.prebuildCommand(
            displayName: "Version from git describe",
            executable: URL(filePath: "/bin/sh"),
            arguments: ["-c", script, "build-info", repository.path(percentEncoded: false), output.path(percentEncoded: false)],
            outputFilesDirectory: output)]
    }
}

/// $1: the repository, $2: where BuildInfo.swift goes. The version scheme
/// (also mount-scripts/package's, which reads it from `faultfs --version`):
/// on a tag T, T without a leading v; after it, T+N.gHASH; with no tag,
/// 0.N+gHASH (N: commits in HEAD's history); ".dirty" when the tree has
/// uncommitted changes; "0+unknown" outside a git checkout.
/// FAULTFS_VERSION and FAULTFS_COMMIT in the environment win.
private let script = #"""
set -u
repo=$1 out=$2
mkdir -p "$out"
git() { command git -C "$repo" -c safe.directory='*' "$@" 2>/dev/null; }
commit=$(git rev-parse HEAD) || commit=unknown
if [ "$commit" = unknown ]; then
    version=0+unknown
else
    short=$(git rev-parse --short=12 HEAD)
    if described=$(git describe --tags --long --abbrev=12); then
        tag=${described%-*-g*}; rest=${described#"$tag"-}; count=${rest%%-*}
        tag=${tag#v}
        if [ "$count" = 0 ]; then version=$tag; else version=$tag+$count.g$short; fi
    else
        version=0.$(git rev-list --count HEAD)+g$short
    fi
    # Untracked files do not count (git describe --dirty's rule).
    git diff-index --quiet HEAD -- || { version=$version.dirty; commit=$commit-dirty; }
fi
version=${FAULTFS_VERSION:-$version}
commit=${FAULTFS_COMMIT:-$commit}
cat > "$out/BuildInfo.swift.new" <<SWIFT
// Generated at build time by Plugins/BuildInfo from git; do not edit.
enum BuildInfo {
    static let version = "$version"
    static let commit = "$commit"
}
SWIFT
if cmp -s "$out/BuildInfo.swift.new" "$out/BuildInfo.swift"; then
    rm -f "$out/BuildInfo.swift.new"
else
    mv "$out/BuildInfo.swift.new" "$out/BuildInfo.swift"
fi
"""#
