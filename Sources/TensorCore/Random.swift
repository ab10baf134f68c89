import Foundation

/// What a random stream is for; each purpose gets a statistically independent stream.
public enum RandomPurpose: Sendable, Hashable {
    case initialization, dropout, sampler, augmentation, clustering, simulation
    case custom(String)

    var tag: String {
        switch self {
        case .initialization: return "init"
        case .dropout: return "dropout"
        case .sampler: return "sampler"
        case .augmentation: return "augment"
        case .clustering: return "cluster"
        case .simulation: return "simulate"
        case .custom(let s): return "custom:" + s
        }
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a 64-bit counter advanced by the golden-ratio increment
/// and passed through a bijective finaliser. The one copy of its constants in the package:
/// `RandomStream` derives its state from it, and code that needs a plain, platform-independent
/// 64-bit sequence or a mixing hash (e.g. a Feistel round function) uses it directly. For random
/// numbers with purposes, ranks and child streams, use `RandomStream`.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    /// The counter; `next()` adds the increment, then returns `mix` of it.
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    @inline(__always)
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return SplitMix64.mix(state)
    }

    /// The finaliser alone: a bijection of UInt64 with full avalanche (each input bit flips each
    /// output bit with probability about ½), usable as a stateless hash.
    @inline(__always)
    public static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A seeded xoshiro256** stream. `RandomStream(seed:rank:purpose:)` gives the same numbers on every
/// run and machine for the same triple, and independent streams for different ranks/purposes.
public struct RandomStream: RandomNumberGenerator, Sendable {
    private var s0: UInt64, s1: UInt64, s2: UInt64, s3: UInt64

    public init(seed: UInt64, rank: Int = 0, purpose: RandomPurpose = .custom("default")) {
        // FNV-1a of the purpose tag (Swift's Hasher is randomised per process, so not usable here).
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in purpose.tag.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        var bySeed = SplitMix64(seed: seed)
        var byRank = SplitMix64(seed: bySeed.next() ^ (UInt64(truncatingIfNeeded: rank) &* 0xD6E8_FEB8_6659_FD93))
        var st = SplitMix64(seed: byRank.next() ^ h)
        s0 = st.next(); s1 = st.next(); s2 = st.next(); s3 = st.next()
        if s0 | s1 | s2 | s3 == 0 { s0 = 1 }
    }

    /// A child stream derived from this one's seed material and an index (e.g. per epoch), without advancing this one.
    public func split(_ index: UInt64) -> RandomStream {
        var r = self
        var x = SplitMix64(seed: s0 ^ (index &* 0x9E37_79B9_7F4A_7C15) ^ s3)
        r.s0 = x.next(); r.s1 = x.next(); r.s2 = x.next(); r.s3 = x.next()
        return r
    }

    @inline(__always)
    public mutating func next() -> UInt64 {
        let result = ((s1 &* 5) << 7 | (s1 &* 5) >> 57) &* 9
        let t = s1 << 17
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3
        s2 ^= t
        s3 = (s3 << 45) | (s3 >> 19)
        return result
    }

    /// Uniform in [0, 1) with 24 random bits.
    @inline(__always)
    public mutating func uniform() -> Float { Float(next() >> 40) * (1.0 / 16_777_216.0) }

    /// Uniform in [0, 1) with 53 random bits.
    @inline(__always)
    public mutating func uniformDouble() -> Double { Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0) }

    public mutating func uniform(_ lo: Float, _ hi: Float) -> Float { lo + (hi - lo) * uniform() }

    /// Standard normal by Box–Muller (one value per call; the pair's second value is discarded for simplicity).
    public mutating func normal() -> Float {
        let u1 = 1 - uniformDouble()  // (0, 1]
        let u2 = uniformDouble()
        return Float((-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2))
    }

    /// Uniform integer in 0..<n.
    public mutating func int(below n: Int) -> Int {
        precondition(n > 0)
        return Int(next(upperBound: UInt64(n)))
    }

    /// A uniformly random permutation of 0..<n (Fisher–Yates).
    public mutating func permutation(_ n: Int) -> [Int] {
        var p = Array(0..<n)
        if n > 1 { for i in stride(from: n - 1, to: 0, by: -1) { p.swapAt(i, int(below: i + 1)) } }
        return p
    }

    /// Fills `t` in place with uniform values in [lo, hi).
    public mutating func fillUniform(_ t: Tensor, _ lo: Float = 0, _ hi: Float = 1) {
        let p = t.pointer
        for i in 0..<t.count { p[i] = lo + (hi - lo) * uniform() }
    }

    /// Fills `t` in place with N(mean, std²).
    public mutating func fillNormal(_ t: Tensor, mean: Float = 0, std: Float = 1) {
        let p = t.pointer
        for i in 0..<t.count { p[i] = mean + std * normal() }
    }

    /// Fills `t` in place with a Bernoulli(keep) mask scaled by `scale` (inverted dropout: scale = 1/keep).
    public mutating func fillBernoulli(_ t: Tensor, keep: Float, scale: Float = 1) {
        let p = t.pointer
        for i in 0..<t.count { p[i] = uniform() < keep ? scale : 0 }
    }
}

/// Weight initialisers (shape fanIn × fanOut, the layout Y = X·W uses).
public enum Initializer: Sendable, Equatable {
    case zeros
    case ones
    case constant(Float)
    /// U(−a, a) with a = gain·√(6 / (fanIn + fanOut)).
    case xavierUniform(gain: Float = 1)
    /// N(0, gain²·2 / (fanIn + fanOut)).
    case xavierNormal(gain: Float = 1)
    /// U(−b, b) with b = gain·√(3 / fanIn), gain √2 for ReLU (He).
    case kaimingUniform(gain: Float = 1.4142135)
    /// N(0, gain² / fanIn).
    case kaimingNormal(gain: Float = 1.4142135)
    case uniform(Float, Float)
    case normal(mean: Float, std: Float)

    /// Fills `t` (rows = fanIn, cols = fanOut) in place.
    public func fill(_ t: Tensor, rng: inout RandomStream) {
        let fanIn = Float(max(t.rows, 1)), fanOut = Float(max(t.cols, 1))
        switch self {
        case .zeros: t.fill(0)
        case .ones: t.fill(1)
        case .constant(let c): t.fill(c)
        case .xavierUniform(let g): let a = g * (6 / (fanIn + fanOut)).squareRoot(); rng.fillUniform(t, -a, a)
        case .xavierNormal(let g): rng.fillNormal(t, std: g * (2 / (fanIn + fanOut)).squareRoot())
        case .kaimingUniform(let g): let b = g * (3 / fanIn).squareRoot(); rng.fillUniform(t, -b, b)
        case .kaimingNormal(let g): rng.fillNormal(t, std: g / fanIn.squareRoot())
        case .uniform(let lo, let hi): rng.fillUniform(t, lo, hi)
        case .normal(let m, let s): rng.fillNormal(t, mean: m, std: s)
        }
    }
}

extension Tensor {
    public static func random(rows: Int, cols: Int, _ initializer: Initializer, rng: inout RandomStream) -> Tensor {
        let t = Tensor(uninitializedRows: rows, cols: cols)
        initializer.fill(t, rng: &rng)
        return t
    }
    public static func uniform(rows: Int, cols: Int, _ lo: Float = 0, _ hi: Float = 1, rng: inout RandomStream) -> Tensor {
        random(rows: rows, cols: cols, .uniform(lo, hi), rng: &rng)
    }
    public static func normal(rows: Int, cols: Int, mean: Float = 0, std: Float = 1, rng: inout RandomStream) -> Tensor {
        random(rows: rows, cols: cols, .normal(mean: mean, std: std), rng: &rng)
    }
}
