import Foundation
import GRDB
import RefineryCuration
import RefineryStore
import Testing
@testable import RefineryPipeline

/// MinHash signatures are kept in the state file: a rerun over a grown dataset reads the known
/// texts' signatures and computes only the new ones.
@Suite struct SignatureReuseTests {
    @Test func storedSignaturesAreReadAndOnlyNewTextsAreHashed() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("refinery-sig-\(UUID().uuidString).db").path
        let store = try RunStore(path: path)
        let deduplicator = MinHashDeduplicator(settings: MinHashSettings(permutations: 64))
        let first = ["alpha beta gamma delta epsilon zeta", "one two three four five six seven", "red green blue cyan magenta yellow"]
        let computed = try DedupStage.signatures(first, deduplicator: deduplicator, store: store)
        #expect(computed == deduplicator.signatures(first))
        // Mark the stored signature of the first text: a rerun must read it, not recompute it.
        let marked = [UInt32](repeating: 7, count: 64)
        let key = deduplicator.signatureSettings, digest = ContentDigest.sha256(first[0])
        let rows = try store.minHashSignatures(settings: key, digests: [digest])
        #expect(rows[digest] == Array(computed[0..<64]))
        try RunStoreEditing.replaceSignature(store: path, settings: key, digest: digest, values: marked)
        let grown = first + ["a brand new text that was not there before at all"]
        let again = try DedupStage.signatures(grown, deduplicator: deduplicator, store: try RunStore(path: path))
        #expect(Array(again[0..<64]) == marked, "the stored signature is used")
        #expect(Array(again[64..<192]) == Array(computed[64..<192]))
        #expect(Array(again[192..<256]) == deduplicator.signatures([grown[3]]), "the new text is hashed")
        // A stored signature of the wrong length (a damaged state file) is computed again.
        try RunStoreEditing.replaceSignature(store: path, settings: key, digest: digest, values: [1, 2, 3])
        let repaired = try DedupStage.signatures(first, deduplicator: deduplicator, store: try RunStore(path: path))
        #expect(Array(repaired[0..<64]) == Array(computed[0..<64]))
        let other = MinHashDeduplicator(settings: MinHashSettings(permutations: 64, seed: 2))
        #expect(other.signatureSettings != key, "other settings never read these signatures")
    }
}

/// Test-only edits of a state file, straight through SQLite.
enum RunStoreEditing {
    static func replaceSignature(store path: String, settings: String, digest: String, values: [UInt32]) throws {
        let queue = try DatabaseQueue(path: path)
        try queue.write { db in
            try db.execute(sql: "UPDATE minhash_signature SET signature = ? WHERE settings = ? AND text_digest = ?",
                           arguments: [values.withUnsafeBufferPointer { Data(buffer: $0) }, settings, digest])
        }
    }
}
