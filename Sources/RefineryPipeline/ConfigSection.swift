import Foundation
import RefineryLLM
import Yams

/// One section (`data`, `generate`, `train`, …) of a run config, keys normalised to snake_case,
/// read with typed getters that name the file, section and key in every error. Keys a section
/// does not know are refused (`finish`), so a typo never silently falls back to a default.
struct ConfigSection {
    let path: String
    let name: String
    private var values: [String: Any]

    init(path: String, name: String, raw: Any?) throws {
        self.path = path
        self.name = name
        guard let raw else { values = [:]; return }
        guard let mapping = raw as? [String: Any] else { throw PipelineError("\(path): section \(name) must be a mapping of keys to values") }
        var normalised: [String: Any] = [:]
        for (key, value) in mapping { normalised[key.replacingOccurrences(of: "-", with: "_")] = value }
        values = normalised
    }

    /// Lays command-line values over the file's (flags win).
    mutating func overlay(_ overrides: [String: any Sendable]) {
        for (key, value) in overrides { values[key] = value }
    }

    /// Fails on a key no getter asked for, listing the known ones.
    func finish(known: [String]) throws {
        let unknown = Set(values.keys).subtracting(known).sorted()
        if let key = unknown.first {
            throw PipelineError("\(path): unknown key \(name).\(key); known keys of \(name): \(known.sorted().joined(separator: ", "))")
        }
    }

    func string(_ key: String) throws -> String? {
        guard let value = values[key] else { return nil }
        if let s = value as? String { return s }
        if let i = value as? Int { return String(i) }
        if let d = value as? Double { return String(d) }
        throw PipelineError("\(path): \(name).\(key) must be a string, found \(value)")
    }

    func int(_ key: String) throws -> Int? {
        guard let value = values[key] else { return nil }
        if let i = value as? Int { return i }
        if let u = value as? UInt64, u <= UInt64(Int.max) { return Int(u) }
        throw PipelineError("\(path): \(name).\(key) must be an integer, found \(value)")
    }

    func double(_ key: String) throws -> Double? {
        guard let value = values[key] else { return nil }
        if let d = value as? Double { return d }
        if let i = value as? Int { return Double(i) }
        if let s = value as? String, let d = Double(s) { return d }
        throw PipelineError("\(path): \(name).\(key) must be a number, found \(value)")
    }

    func bool(_ key: String) throws -> Bool? {
        guard let value = values[key] else { return nil }
        if let b = value as? Bool { return b }
        throw PipelineError("\(path): \(name).\(key) must be true or false, found \(value)")
    }

    /// A list of mappings (e.g. `sources: [{path: …, count: …}]`), as parsed.
    func mappings(_ key: String) throws -> [[String: Any]]? {
        guard let value = values[key] else { return nil }
        guard let list = value as? [Any], let items = list as? [[String: Any]] else {
            throw PipelineError("\(path): \(name).\(key) must be a list of mappings")
        }
        return items
    }

    /// A list of any items (names or mappings), as parsed.
    func list(_ key: String) throws -> [Any]? {
        guard let value = values[key] else { return nil }
        if let list = value as? [Any] { return list }
        if let s = value as? String { return s.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
        throw PipelineError("\(path): \(name).\(key) must be a list")
    }

    /// The value as parsed (a scalar or a mapping).
    func raw(_ key: String) throws -> Any? { values[key] }

    func strings(_ key: String) throws -> [String]? {
        guard let value = values[key] else { return nil }
        if let list = value as? [Any] { return list.map { "\($0)" } }
        if let s = value as? String { return s.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
        throw PipelineError("\(path): \(name).\(key) must be a list or a comma-separated string")
    }

    /// Dollars per million prompt and completion tokens (`price_input`, `price_output`), each a
    /// finite number ≥ 0; a missing one is `fallback`'s.
    func price(fallback: Price = Price()) throws -> Price {
        let input = try double("price_input") ?? fallback.inputPerMillion, output = try double("price_output") ?? fallback.outputPerMillion
        guard input.isFinite, output.isFinite, input >= 0, output >= 0 else {
            throw PipelineError("\(path): \(name).price_input and price_output must be dollars per million tokens (finite, ≥ 0), found \(input) and \(output)")
        }
        return Price(inputPerMillion: input, outputPerMillion: output)
    }

    /// A seed: a non-negative integer.
    func seed(_ key: String) throws -> UInt64? {
        guard let value = try int(key) else { return nil }
        guard value >= 0 else { throw PipelineError("\(path): \(name).\(key) must be ≥ 0, found \(value)") }
        return UInt64(value)
    }
}

/// A run config file parsed into its sections (unknown sections refused).
struct ConfigFile {
    static let sections = ["data", "generate", "curate", "train", "export"]
    let path: String
    let top: [String: Any]

    init(path: String) throws {
        self.path = path
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw PipelineError("cannot read the config \(path): \(error.localizedDescription)")
        }
        let root: Any?
        do { root = try Yams.load(yaml: text) } catch {
            throw PipelineError("\(path) is not valid YAML: \(error)")
        }
        if root == nil { top = [:]; return }
        guard let top = root as? [String: Any] else {
            throw PipelineError("\(path): expected a mapping with sections \(Self.sections.joined(separator: ", "))")
        }
        if let unknown = top.keys.sorted().first(where: { !Self.sections.contains($0) }) {
            throw PipelineError("\(path): unknown section \"\(unknown)\" (sections: \(Self.sections.joined(separator: ", ")))")
        }
        self.top = top
    }

    func section(_ name: String) throws -> ConfigSection { try ConfigSection(path: path, name: name, raw: top[name]) }
}
