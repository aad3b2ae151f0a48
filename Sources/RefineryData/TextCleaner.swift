import Foundation

/// Cleans article text before chunking.
public enum CleaningMode: String, Sendable, CaseIterable {
    /// The reference pipeline: keep word characters, whitespace and `.,!?'`; other characters
    /// become spaces; whitespace collapses to single spaces.
    case reference
    /// Keep code and markdown: only control characters go, runs of spaces collapse within a line,
    /// three or more newlines become two.
    case keepMarkup = "keep-markup"
}

public enum TextCleaner {
    public static func clean(_ text: String, mode: CleaningMode = .reference) -> String {
        switch mode {
        case .reference: return reference(text)
        case .keepMarkup: return keepMarkup(text)
        }
    }

    static func isWord(_ scalar: Unicode.Scalar) -> Bool {
        let p = scalar.properties
        return p.isAlphabetic || p.numericType != nil || scalar == "_"
    }

    static func reference(_ text: String) -> String {
        var out = String.UnicodeScalarView()
        var pendingSpace = false
        for scalar in text.unicodeScalars {
            let keep = isWord(scalar) || scalar == "." || scalar == "," || scalar == "!" || scalar == "?" || scalar == "'"
            if keep && !scalar.properties.isWhitespace {
                if pendingSpace && !out.isEmpty { out.append(" ") }
                pendingSpace = false
                out.append(scalar)
            } else {
                pendingSpace = true
            }
        }
        return String(out)
    }

    static func keepMarkup(_ text: String) -> String {
        var lines: [String] = []
        for rawLine in text.replacingOccurrences(of: "\r\n", with: "\n").split(separator: "\n", omittingEmptySubsequences: false) {
            var line = String.UnicodeScalarView()
            var previousSpace = false
            var leading = true
            for scalar in rawLine.unicodeScalars {
                if scalar.properties.generalCategory == .control && scalar != "\t" { continue }
                let isSpace = scalar == " " || scalar == "\t"
                // Indentation is kept (code); elsewhere a run of spaces and tabs becomes one space.
                if !isSpace { leading = false }
                if isSpace && !leading {
                    if !previousSpace { line.append(" ") }
                } else {
                    line.append(scalar)
                }
                previousSpace = isSpace
            }
            var text = String(line)
            while text.hasSuffix(" ") || text.hasSuffix("\t") { text.removeLast() }
            lines.append(text)
        }
        var result: [String] = []
        var blanks = 0
        for line in lines {
            if line.isEmpty { blanks += 1; if blanks > 1 { continue } } else { blanks = 0 }
            result.append(line)
        }
        return result.joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
