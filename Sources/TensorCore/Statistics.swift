// Order statistics on local arrays. Distributed versions (e.g. the median library size over all
// ranks) gather first and call these, so every copy of the convention lives here.

/// The median of `x`, with numpy's conventions.
///
/// For an odd count the middle value of the sorted values; for an even count the mean of the two
/// middle ones (`numpy.median([1, 2, 3, 4]) == 2.5`). NaN when `x` is empty or holds a NaN (numpy
/// returns nan in both cases, with a warning for the empty one). O(n log n): it sorts a copy.
public func median(_ x: [Double]) -> Double {
    guard !x.isEmpty, !x.contains(where: \.isNaN) else { return .nan }
    let s = x.sorted()
    let n = s.count
    return n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2
}
