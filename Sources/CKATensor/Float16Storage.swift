/// IEEE binary16 storage conversion (what float16 HDF5 datasets and checkpoints hold).
///
/// Values are rounded to nearest-even on the way down; overflow becomes ±Inf as in NumPy/PyTorch.
public enum Float16Storage {
    /// Converts binary16 bit patterns to `Float` (exact).
    public static func decode(_ bits: UnsafeBufferPointer<UInt16>, into out: UnsafeMutableBufferPointer<Float>) {
        precondition(out.count >= bits.count)
        for i in 0..<bits.count { out[i] = Float(halfBits: bits[i]) }
    }

    /// Converts `Float` values to binary16 bit patterns (round to nearest even).
    public static func encode(_ values: UnsafeBufferPointer<Float>, into out: UnsafeMutableBufferPointer<UInt16>) {
        precondition(out.count >= values.count)
        for i in 0..<values.count { out[i] = values[i].halfBits }
    }

    /// Converts bfloat16 bit patterns (the upper half of a float32) to `Float` (exact).
    public static func decodeBFloat16(_ bits: UnsafeBufferPointer<UInt16>, into out: UnsafeMutableBufferPointer<Float>)
    {
        precondition(out.count >= bits.count)
        for i in 0..<bits.count { out[i] = Float(bitPattern: UInt32(bits[i]) << 16) }
    }
}

extension Float {
    /// The `Float` value of an IEEE binary16 bit pattern.
    @inlinable public init(halfBits h: UInt16) {
        let sign = UInt32(h & 0x8000) << 16
        let exp = UInt32(h >> 10) & 0x1f
        let mant = UInt32(h & 0x3ff)
        if exp == 0 {
            // Zero or subnormal: mant · 2⁻²⁴.
            let v = Float(mant) * 0x1p-24
            self = sign != 0 ? -v : v
        } else if exp == 31 {
            self = Float(bitPattern: sign | 0x7f80_0000 | (mant << 13))
        } else {
            self = Float(bitPattern: sign | ((exp + 112) << 23) | (mant << 13))
        }
    }

    /// The IEEE binary16 bit pattern nearest to this value (ties to even; overflow to ±Inf).
    @inlinable public var halfBits: UInt16 {
        let x = bitPattern
        let sign = UInt16((x >> 16) & 0x8000)
        let exp = Int((x >> 23) & 0xff)
        var mant = x & 0x7f_ffff
        if exp == 255 { return sign | 0x7c00 | (mant != 0 ? 0x200 : 0) }  // Inf / NaN
        let e = exp - 127 + 15
        if e >= 31 { return sign | 0x7c00 }  // overflow
        if e <= 0 {  // subnormal or zero
            if e < -10 { return sign }
            mant |= 0x80_0000
            let shift = UInt32(14 - e)
            var h = mant >> shift
            let rem = mant & ((1 << shift) - 1), half = UInt32(1) << (shift - 1)
            if rem > half || (rem == half && (h & 1) == 1) { h += 1 }
            return sign | UInt16(h)
        }
        var h = (UInt32(e) << 10) | (mant >> 13)
        let rem = mant & 0x1fff
        if rem > 0x1000 || (rem == 0x1000 && (h & 1) == 1) { h += 1 }  // may carry into exponent: correct
        return sign | UInt16(h)
    }
}
