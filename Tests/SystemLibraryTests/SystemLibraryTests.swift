import COpenBLAS
import CZeroMQ
import Testing

/// The system libraries link and answer.
@Suite struct SystemLibraryTests {
    @Test func zeroMQReportsVersionFour() {
        var major: Int32 = 0, minor: Int32 = 0, patch: Int32 = 0
        zmq_version(&major, &minor, &patch)
        #expect(major >= 4)
    }

    @Test func openBLASMultipliesSmallMatrices() {
        let a: [Float] = [1, 2, 3, 4]  // [[1,2],[3,4]]
        let b: [Float] = [5, 6, 7, 8]
        var c = [Float](repeating: 0, count: 4)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 2, 2, 2, 1, a, 2, b, 2, 0, &c, 2)
        #expect(c == [19, 22, 43, 50])
    }
}
