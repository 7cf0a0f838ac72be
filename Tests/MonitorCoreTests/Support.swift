import Foundation
@testable import MonitorCore

/// Reads a file of Fixtures/ (copied as a resource directory).
func fixture(_ name: String) throws -> String {
    guard let url = Bundle.module.url(forResource: name, withExtension: nil, subdirectory: "Fixtures") else {
        throw FixtureError.missing(name)
    }
    return try String(contentsOf: url, encoding: .utf8)
}

enum FixtureError: Error { case missing(String) }
