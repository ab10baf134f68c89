/// SplitMix64: a tiny seeded generator used where every rank must draw the same numbers
/// (shared decisions such as k-means++ candidates and silhouette samples).
struct SharedRandom {
    private var state: UInt64
    init(seed: UInt64, stream: UInt64 = 0) { state = seed &+ 0x9E37_79B9_7F4A_7C15 &* (stream &+ 1) }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    mutating func uniform() -> Double { Double(next() >> 11) * 0x1.0p-53 }
    /// Uniform integer in 0..<n.
    mutating func below(_ n: Int) -> Int { Int(uniform() * Double(n)) % max(n, 1) }
}
