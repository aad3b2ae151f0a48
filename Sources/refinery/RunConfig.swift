import Foundation
import Yams

/// One section (`train`, `data`, …) of a run config YAML file, keys normalised to snake_case.
struct RunConfigSection {
    let path: String
    let section: String
    private let values: [String: Any]

    /// Loads `section` from the YAML file at `path` (an absent section is empty).
    init(path: String, section: String) throws {
        self.path = path
        self.section = section
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw CommandError("cannot read the config \(path): \(error.localizedDescription)")
        }
        let root: Any?
        do { root = try Yams.load(yaml: text) } catch {
            throw CommandError("\(path) is not valid YAML: \(error)")
        }
        guard let top = root as? [String: Any] else {
            throw CommandError("\(path): expected a mapping with sections data, generate, curate, train, export")
        }
        let known: Set<String> = ["data", "generate", "curate", "train", "export"]
        if let unknown = top.keys.first(where: { !known.contains($0) }) {
            throw CommandError("\(path): unknown section \"\(unknown)\" (sections: data, generate, curate, train, export)")
        }
        guard let raw = top[section] else { values = [:]; return }
        guard let mapping = raw as? [String: Any] else { throw CommandError("\(path): section \(section) must be a mapping") }
        var normalised: [String: Any] = [:]
        for (key, value) in mapping { normalised[key.replacingOccurrences(of: "-", with: "_")] = value }
        values = normalised
    }

    /// Fails on keys not in `allowed`, naming the closest one.
    func check(allowed: Set<String>) throws {
        for key in values.keys where !allowed.contains(key) {
            throw CommandError("\(path): unknown key \(section).\(key); known keys: \(allowed.sorted().joined(separator: ", "))")
        }
    }

    func string(_ key: String) throws -> String? {
        guard let value = values[key] else { return nil }
        if let s = value as? String { return s }
        if let i = value as? Int { return String(i) }
        if let d = value as? Double { return String(d) }
        throw CommandError("\(path): \(section).\(key) must be a string")
    }

    func int(_ key: String) throws -> Int? {
        guard let value = values[key] else { return nil }
        if let i = value as? Int { return i }
        throw CommandError("\(path): \(section).\(key) must be an integer, found \(value)")
    }

    func double(_ key: String) throws -> Double? {
        guard let value = values[key] else { return nil }
        if let d = value as? Double { return d }
        if let i = value as? Int { return Double(i) }
        if let s = value as? String, let d = Double(s) { return d }
        throw CommandError("\(path): \(section).\(key) must be a number, found \(value)")
    }

    func bool(_ key: String) throws -> Bool? {
        guard let value = values[key] else { return nil }
        if let b = value as? Bool { return b }
        throw CommandError("\(path): \(section).\(key) must be true or false, found \(value)")
    }

    func strings(_ key: String) throws -> [String]? {
        guard let value = values[key] else { return nil }
        if let list = value as? [Any] { return list.map { "\($0)" } }
        if let s = value as? String { return s.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
        throw CommandError("\(path): \(section).\(key) must be a list or a comma-separated string")
    }
}

/// A flag's value if given, else the config's value for `key`, else nil.
func configured<T>(_ flag: T?, _ section: RunConfigSection?, _ key: String, _ read: (RunConfigSection, String) throws -> T?) throws -> T? {
    if let flag { return flag }
    guard let section else { return nil }
    return try read(section, key)
}
