import COneDNN
import CRefineryKernels
import Foundation

/// The library that computes each block of a matrix product.
///
/// `onednn` (Debian's `libdnnl-dev`) reaches about twice OpenBLAS 0.3.21's float32 speed on
/// AVX-512 machines and has bfloat16 kernels; `openblas` has no bfloat16 products (their bfloat16
/// operands are widened to float32 block by block). Chosen with `REFINERY_BLAS=openblas|onednn`;
/// the default is oneDNN when its CPU engine starts.
public enum ProductBackend: String, Sendable, CaseIterable {
    case openblas
    case onednn

    /// The backend of this process: `REFINERY_BLAS` when it names one, else oneDNN when it starts,
    /// else OpenBLAS. (`checkEnvironment()` reports a misspelt or unusable setting.)
    public static let current: ProductBackend = {
        if let text = ProcessInfo.processInfo.environment["REFINERY_BLAS"], let chosen = ProductBackend(rawValue: text.lowercased()) {
            return chosen == .onednn && rk_dnnl_available() == 0 ? .openblas : chosen
        }
        return rk_dnnl_available() != 0 ? .onednn : .openblas
    }()

    /// Whether this backend multiplies bfloat16 operands as they are: oneDNN on a CPU where it has
    /// bfloat16 kernels (AVX-512). Otherwise bfloat16 operands are widened to float32 block by block,
    /// which gives float32 products of the rounded operands, at float32 speed.
    public var hasBFloat16Kernels: Bool { self == .onednn && rk_dnnl_bf16_available() != 0 }

    /// The backend's library and version, e.g. "oneDNN 2.6.3" (for benchmark headers and logs).
    public var libraryVersion: String {
        switch self {
        case .openblas: return "OpenBLAS"
        case .onednn:
            guard let version = dnnl_version() else { return "oneDNN" }
            return "oneDNN \(version.pointee.major).\(version.pointee.minor).\(version.pointee.patch)"
        }
    }

    /// Throws a message naming the variable, its value and the accepted ones when `REFINERY_BLAS`
    /// is set to something this build cannot use.
    public static func checkEnvironment() throws {
        guard let text = ProcessInfo.processInfo.environment["REFINERY_BLAS"], !text.isEmpty else { return }
        guard let chosen = ProductBackend(rawValue: text.lowercased()) else {
            throw ProductBackendError("REFINERY_BLAS=\(text) is not a product backend; use openblas or onednn (or unset it for the default, \(current.rawValue))")
        }
        if chosen == .onednn && rk_dnnl_available() == 0 {
            throw ProductBackendError("REFINERY_BLAS=onednn but oneDNN's CPU engine did not start; install libdnnl-dev or use REFINERY_BLAS=openblas")
        }
    }
}

/// A product backend that cannot be used as configured.
public struct ProductBackendError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}
