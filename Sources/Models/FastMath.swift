// Eight-lane exp / log for the fused loss kernels (Cephes single-precision polynomials, ≈ 2 ulp on
// the ranges used: exp on [−87, 88], log on positive normal numbers). Pure SIMD arithmetic and bit
// operations, so each call is a handful of vector instructions instead of eight libm calls.

typealias F8 = SIMD8<Float>

@inline(__always) func load8(_ p: UnsafePointer<Float>) -> F8 { UnsafeRawPointer(p).loadUnaligned(as: F8.self) }
@inline(__always) func store8(_ v: F8, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: F8.self) }

@inline(__always) func vexp(_ x0: F8) -> F8 {
    let x = vclamp(x0, -87.3, 88.3)
    // n = round(x / ln 2) via the 1.5·2²³ trick; its integer sits in the low mantissa bits.
    let t = F8(repeating: 12582912.0).addingProduct(x, F8(repeating: 1.44269504088896341))
    let n = t - 12582912.0
    let r = x - n * 0.693359375 + n * 2.12194440e-4
    var y = F8(repeating: 1.9875691500e-4)
    y = F8(repeating: 1.3981999507e-3).addingProduct(y, r)
    y = F8(repeating: 8.3334519073e-3).addingProduct(y, r)
    y = F8(repeating: 4.1665795894e-2).addingProduct(y, r)
    y = F8(repeating: 1.6666665459e-1).addingProduct(y, r)
    y = F8(repeating: 5.0000001201e-1).addingProduct(y, r)
    y = y * (r * r) + r + 1
    let tb = unsafeBitCast(t, to: SIMD8<UInt32>.self)
    let scale = (tb &- 0x4B40_0000 &+ 127) &<< 23
    return y * unsafeBitCast(scale, to: F8.self)
}

@_transparent func vlog(_ x: F8) -> F8 {
    let b = unsafeBitCast(x, to: SIMD8<UInt32>.self)
    var e = F8(SIMD8<Int32>(truncatingIfNeeded: (b &>> 23) & 0xFF) &- 126)
    var m = unsafeBitCast((b & 0x807F_FFFF) | 0x3F00_0000, to: F8.self)   // [0.5, 1)
    let small = m .< 0.707106781186547524
    e = e.replacing(with: e - 1, where: small)
    m = m.replacing(with: m + m - 1, where: small)
    m = m.replacing(with: m - 1, where: .!small)
    let z = m * m
    var y = F8(repeating: 7.0376836292e-2)
    y = F8(repeating: -1.1514610310e-1).addingProduct(y, m)
    y = F8(repeating: 1.1676998740e-1).addingProduct(y, m)
    y = F8(repeating: -1.2420140846e-1).addingProduct(y, m)
    y = F8(repeating: 1.4249322787e-1).addingProduct(y, m)
    y = F8(repeating: -1.6668057665e-1).addingProduct(y, m)
    y = F8(repeating: 2.0000714765e-1).addingProduct(y, m)
    y = F8(repeating: -2.4999993993e-1).addingProduct(y, m)
    y = F8(repeating: 3.3333331174e-1).addingProduct(y, m)
    y = y * m * z
    y = y - e * 2.12194440e-4
    y = y - 0.5 * z
    return m + y + e * 0.693359375
}

/// log(1 + e) for e ≥ 0 (with the rounding of 1 + e corrected).
@_transparent func vlog1p(_ e: F8) -> F8 {
    let u = 1 + e
    return vlog(u) + (e - (u - 1)) / u
}

@inline(__always) func vabs(_ x: F8) -> F8 {
    unsafeBitCast(unsafeBitCast(x, to: SIMD8<UInt32>.self) & 0x7FFF_FFFF, to: F8.self)
}

/// min(max(x, lo), hi) lane-wise, as compare + select (inlined, unlike the generic library helpers).
@inline(__always) func vclamp(_ x: F8, _ lo: Float, _ hi: Float) -> F8 {
    x.replacing(with: lo, where: x .< lo).replacing(with: hi, where: x .> hi)
}

@inline(__always) func vrelu(_ x: F8) -> F8 { x.replacing(with: 0, where: x .< 0) }
