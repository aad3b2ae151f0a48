import RefineryCore
import RefineryModel

/// What `--dtype` (or a score stage's `dtype`) asks of a scorer: a float precision, or `int8` —
/// a BERT-family classifier's layer products dynamically quantized (`BertEncoder`), the rest in
/// float32. About 1.5× the float32 speed on AVX2 CPUs; logits move by ~1e-3 (the bench prints it).
public enum ScorerPrecision: Sendable, Equatable {
    case float(DTypeChoice)
    case int8

    /// The accepted spellings, for messages.
    public static let spellings = "auto, float32 (fp32), bfloat16 (bf16) or int8 (BERT-family classifiers)"

    /// Parses `int8` or a `DTypeChoice` spelling; throws a message naming `source` and the accepted values.
    public init(parsing text: String, source: String) throws {
        if text.lowercased() == "int8" {
            self = .int8
        } else if let choice = try? DTypeChoice(parsing: text, source: source) {
            self = .float(choice)
        } else {
            throw CoreError("\(source) \(text) is not a precision; use \(Self.spellings)")
        }
    }
}
