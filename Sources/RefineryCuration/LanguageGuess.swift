/// A small language identifier for the filter's language check: the writing system first (Han,
/// kana, Hangul, Cyrillic, Greek, Arabic, Hebrew, Devanagari, Thai), then, for Latin text, which
/// language's most common words cover most of it. Enough to catch answers in the wrong language
/// (the typical failure of back-translation); not a general classifier.
public enum LanguageGuess {
    /// ISO 639-1 codes it can return.
    public static let codes = ["en", "de", "fr", "es", "it", "pt", "nl", "ru", "uk", "el", "ar", "he", "hi", "th", "zh", "ja", "ko"]

    static let stopwords: [String: Set<String>] = [
        "en": ["the", "and", "of", "to", "is", "in", "that", "it", "for", "with", "as", "was", "on", "are", "be", "this", "by", "you", "not", "or", "have", "from", "which", "can"],
        "de": ["der", "die", "und", "das", "ist", "nicht", "zu", "den", "mit", "sich", "des", "auf", "ein", "eine", "dem", "im", "für", "auch", "es", "von", "wird", "sind", "oder"],
        "fr": ["le", "la", "les", "et", "des", "est", "un", "une", "du", "en", "que", "qui", "dans", "pour", "pas", "sur", "au", "par", "plus", "sont", "ce", "avec", "il"],
        "es": ["el", "la", "de", "que", "y", "en", "los", "se", "del", "las", "un", "por", "con", "no", "una", "su", "para", "es", "al", "lo", "como", "más", "pero"],
        "it": ["il", "di", "che", "è", "e", "la", "per", "un", "in", "non", "una", "del", "della", "sono", "con", "si", "da", "le", "gli", "nel", "anche", "come", "più"],
        "pt": ["o", "de", "que", "e", "do", "da", "em", "um", "para", "é", "com", "não", "uma", "os", "no", "se", "na", "por", "mais", "as", "dos", "como", "mas"],
        "nl": ["de", "het", "een", "en", "van", "is", "dat", "op", "te", "in", "niet", "zijn", "met", "voor", "die", "er", "ook", "aan", "om", "worden", "wordt", "bij"],
    ]

    /// The most likely language of `text`, or nil when it has too few letters to say.
    public static func of(_ text: String) -> String? {
        var counts: [String: Int] = [:], letters = 0
        for scalar in text.unicodeScalars where scalar.properties.isAlphabetic {
            letters += 1
            if let script = script(scalar) { counts[script, default: 0] += 1 }
        }
        guard letters >= 12 else { return nil }
        if let (script, count) = counts.max(by: { $0.value < $1.value }), Double(count) > 0.3 * Double(letters) {
            switch script {
            case "kana": return "ja"
            case "han": return (counts["kana"] ?? 0) > 0 ? "ja" : "zh"
            case "cyrillic": return text.unicodeScalars.contains { "ґєії".unicodeScalars.contains($0) } ? "uk" : "ru"
            default: return script
            }
        }
        let words = text.lowercased().split(whereSeparator: { !$0.isLetter && $0 != "'" })
        guard !words.isEmpty else { return nil }
        var best: (String, Int)? = nil
        for (code, list) in stopwords {
            let hits = words.filter { list.contains(String($0)) }.count
            if hits > (best?.1 ?? 0) { best = (code, hits) }
        }
        guard let (code, hits) = best, hits >= max(2, words.count / 20) else { return nil }
        return code
    }

    static func script(_ scalar: Unicode.Scalar) -> String? {
        switch scalar.value {
        case 0x3040...0x30FF: return "kana"
        case 0x4E00...0x9FFF, 0x3400...0x4DBF: return "han"
        case 0xAC00...0xD7AF, 0x1100...0x11FF: return "ko"
        case 0x0400...0x04FF: return "cyrillic"
        case 0x0370...0x03FF: return "el"
        case 0x0600...0x06FF: return "ar"
        case 0x0590...0x05FF: return "he"
        case 0x0900...0x097F: return "hi"
        case 0x0E00...0x0E7F: return "th"
        default: return nil
        }
    }
}
