namespace Vlm.Core;

/// <summary>
/// Seedable generator (xoshiro256**, seeded through splitmix64): the same seed gives the same
/// stream on every machine and run. Normals use Box–Muller in double precision.
/// It does not reproduce PyTorch's Mersenne-Twister stream; parity tests use stored tensors instead.
/// </summary>
public sealed class Rng
{
    private ulong _s0, _s1, _s2, _s3;
    private double? _spareNormal;

    public Rng(ulong seed)
    {
        ulong x = seed;
        _s0 = SplitMix(ref x); _s1 = SplitMix(ref x); _s2 = SplitMix(ref x); _s3 = SplitMix(ref x);
    }

    private static ulong SplitMix(ref ulong x)
    {
        ulong z = x += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    public ulong NextUInt64()
    {
        ulong result = ulong.RotateLeft(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0; _s3 ^= _s1; _s1 ^= _s2; _s0 ^= _s3; _s2 ^= t;
        _s3 = ulong.RotateLeft(_s3, 45);
        return result;
    }

    /// <summary>Uniform in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    public float NextFloat() => (float)((NextUInt64() >> 40) * (1.0 / (1UL << 24)));

    /// <summary>Uniform integer in [0, n).</summary>
    public int NextInt(int n)
    {
        if (n <= 0) throw new ArgumentOutOfRangeException(nameof(n));
        return (int)((NextUInt64() >> 33) % (ulong)n);
    }

    public double NextNormal()
    {
        if (_spareNormal is double s) { _spareNormal = null; return s; }
        double u1, u2;
        do u1 = NextDouble(); while (u1 <= double.Epsilon);
        u2 = NextDouble();
        double rad = Math.Sqrt(-2.0 * Math.Log(u1));
        _spareNormal = rad * Math.Sin(2 * Math.PI * u2);
        return rad * Math.Cos(2 * Math.PI * u2);
    }

    /// <summary>Full generator state, for checkpoints that must resume bit-identically.</summary>
    public ulong[] GetState() => [_s0, _s1, _s2, _s3, _spareNormal is double d ? (ulong)BitConverter.DoubleToInt64Bits(d) : 0, _spareNormal is null ? 0UL : 1UL];

    public void SetState(ulong[] state)
    {
        if (state.Length != 6) throw new ArgumentException("Rng state must have 6 words");
        (_s0, _s1, _s2, _s3) = (state[0], state[1], state[2], state[3]);
        _spareNormal = state[5] != 0 ? BitConverter.Int64BitsToDouble((long)state[4]) : null;
    }

    public void Shuffle<T>(IList<T> list)
    {
        for (int i = list.Count - 1; i > 0; i--)
        {
            int j = NextInt(i + 1);
            (list[i], list[j]) = (list[j], list[i]);
        }
    }
}

public sealed partial class Tensor
{
    public static Tensor Randn(int[] shape, Rng rng, float mean = 0f, float std = 1f)
    {
        var t = Empty(shape);
        var s = t.Span;
        for (int i = 0; i < s.Length; i++) s[i] = (float)(mean + std * rng.NextNormal());
        return t;
    }

    public static Tensor Rand(int[] shape, Rng rng, float low = 0f, float high = 1f)
    {
        var t = Empty(shape);
        var s = t.Span;
        for (int i = 0; i < s.Length; i++) s[i] = (float)(low + (high - low) * rng.NextDouble());
        return t;
    }

    public static Tensor Arange(int n)
    {
        var d = new long[n];
        for (int i = 0; i < n; i++) d[i] = i;
        return FromArray(d, n);
    }
}
