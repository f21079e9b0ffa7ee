using System.Buffers;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

[assembly: InternalsVisibleTo("Vlm.Core.Tests")]

namespace Vlm.Core.Kernels;

/// <summary>
/// Managed single-precision GEMM in the BLIS shape (Van Zee &amp; van de Geijn, "BLIS: A Framework for Rapidly
/// Instantiating BLAS Functionality", 2015), adapted to what measured fastest on AVX2 + FMA with .NET:
/// <list type="bullet">
/// <item>B is packed per thread into KC-deep × 16-wide panels (p-major inside a panel, 16 floats per k step), so the
///   micro-kernel streams it with two aligned-stride loads per k step.</item>
/// <item>A is NOT packed (except op(A) = Aᵀ, below): the micro-kernel reads 6 rows of A in place through 6 row
///   pointers and broadcasts one element per row per k step. Packing A cost more than it saved on this machine.</item>
/// <item>The 6×16 micro-kernel keeps 12 Vector256 accumulators (6 rows × 2 halves) in registers; with the two B
///   vectors and one broadcast that is 15 of the 16 ymm registers.</item>
/// <item>The 6 C rows of the tile are prefetched before each micro-kernel runs its k loop, so the epilogue's
///   read-modify-write of C does not stall.</item>
/// </list>
/// On AVX-512 CPUs the same design runs a 6×32 micro-kernel on Vector512 over 32-wide B panels (same 12
/// accumulators, half the loads per flop); it measured ~10–20% faster than the 6×16 kernel on Zen 4.
/// Threads own disjoint slices of C (columns, or rows when N is narrow) with their own packing buffers: no barriers.
/// Op(A) = Aᵀ (the weight gradient gᵀ·x): each thread transposes its MC×KC blocks of op(A) into a small buffer
/// just before they are used, so no M×K temporary is needed; when a thread's columns span several NC blocks
/// (which would repack A for each) A is transposed once into a pooled row-major buffer instead.
/// </summary>
/// <summary>Activation applied after the bias in a GEMM epilogue: exact (erf) GELU, or CLIP's QuickGELU x·σ(1.702x).</summary>
public enum GemmEpilogue { None, Gelu, QuickGelu }

public static unsafe class GemmManaged
{
    private const int MR = 6, NR = 16, NRW = 32;

    /// <summary>VLM_GEMM_AVX512=0 keeps the AVX2 6×16 kernel on AVX-512 machines (for comparisons).</summary>
    private static readonly bool WideEnabled = Environment.GetEnvironmentVariable("VLM_GEMM_AVX512") != "0";
    // Block sizes (BLIS names). The AVX2 6×16 path keeps the sizes it was tuned with; the AVX-512 6×32 path uses
    // a deep k block and a short row block, measured on the project's Zen 4 (2 vCPU, L1d 32 KiB, L2 1 MiB per core)
    // with an interleaved old/new harness timing CPU time at 1 thread (the VM's wall clock swings 2× under load).
    // Against the old (KC 256, MC 72, NC 512) on the 6×32 path, per-thread shapes of the ViT/BridgeTower Linears:
    //   KC 128                      −8…−11%      KC 384             +3…+5%
    //   KC 512                      +1…+8%       KC 768             −3…+10%
    //   KC 768, NC 256              +2…+9%       KC 768, MC 24      +3…+11%
    //   KC 1024, MC 24 (chosen)     +2…+15%      KC 1024, NC 256, A tiles outside the B panels   +2…+13%
    // A 32-wide B micro-panel is KC·128 bytes, so at KC 256 it already filled L1 and was streamed from L2 anyway;
    // a deeper block mostly saves k-block passes (each re-reads and re-writes the C tiles and re-enters the
    // micro-kernel). With MC 24 the A block (24×1024 floats, 96 KiB) stays in L2 beside the streamed B panels.
    // The same sizes on the AVX2 path were −2…+8% (neutral), so AVX2-only CPUs keep the old ones.
    // Tried and dropped (same harness): a 12×32 micro-kernel (24 zmm accumulators) — reading A in place through
    // 12 row pointers the JIT spills every accumulator on each k step; over a k-major packed A panel it compiles
    // clean but measured 0.81–1.04× the old code with (KC, MC) = (1024, 48), (512, 96), (256, 144), below the
    // 6×32 kernel at the sizes above. Equal-depth k blocks (1576 = 2×788 rather than 1024 + 552): no difference.
    // Handing 2-thread column chunks out dynamically (4 or 2 per thread): lost in the wall-clock noise. Freeing
    // the general register the 6×32 loop spills (an A row pointer) by not keeping C row pointers live: 1.00×.
    /// <summary>k-block depth (AVX2 path): a 256×16 B micro-panel (16 KiB) plus 6 A row segments (6 KiB) stay in L1.</summary>
    private const int KC = 256;
    /// <summary>Row block (AVX2 path): an MC×KC slab of A (72 KiB) is reused from L2 across the column panels.</summary>
    private const int MC = 72;
    /// <summary>k-block depth and row block of the AVX-512 path (see above).</summary>
    private const int KcWide = 1024, McWide = 24;
    /// <summary>Column block: the packed KC×NC B block is reused across all row blocks of a thread's share.</summary>
    private const int NC = 512;

    /// <summary>With a prepacked B, a thread's rows all run against each B panel before the next (one row block) when
    /// their A block fits in L2 beside one panel: each panel then comes from memory once and serves every row tile
    /// while it sits in L2. A weight used once per forward is cold, and the default 24-row blocks read the first
    /// pass of every panel straight from DRAM at a few rows' worth of flops per byte. Measured with 12 cold
    /// 768×3072 / 3072×768 weights at 197 rows: +1…7% over packing per call with 24-row blocks, +9…13% with all rows.</summary>
    private static readonly long PrepackedAllRowsBytes = L2Bytes() - NRW * KcWide * sizeof(float);

    /// <summary>Per-core L2 size from sysfs (Linux), else 1 MiB (the project machine's Zen 4).</summary>
    private static long L2Bytes()
    {
        try
        {
            var text = File.ReadAllText("/sys/devices/system/cpu/cpu0/cache/index2/size").Trim();
            long mult = text.EndsWith('K') ? 1024 : text.EndsWith('M') ? 1 << 20 : 1;
            if (long.TryParse(text.TrimEnd('K', 'M'), out var v) && v > 0) return v * mult;
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return 1 << 20;
    }

    public static bool IsAccelerated => Fma.IsSupported && Avx.IsSupported;

    /// <summary>C = alpha·op(A)·op(B) + beta·C (row-major). <paramref name="maxThreads"/> ≤ 1 keeps the call on the
    /// calling thread. Arguments are assumed validated by <see cref="Gemm.Check"/>.</summary>
    public static void Sgemm(bool transA, bool transB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc,
        int maxThreads) => Sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, maxThreads, Avx512F.IsSupported);

    /// <summary>C = act(op(A)·op(B) + bias) with the bias add and activation applied to each finished C block while
    /// it is still in cache (Linear layers: no second pass over the output, no temporary). <paramref name="bias"/>
    /// is empty (none) or holds n floats, added to every row.</summary>
    public static void SgemmBias(bool transA, bool transB, int m, int n, int k,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, Span<float> c, int ldc,
        ReadOnlySpan<float> bias, GemmEpilogue act, int maxThreads)
    {
        if (!bias.IsEmpty && bias.Length < n) throw new ArgumentException($"GEMM bias has {bias.Length} values for {n} columns");
        fixed (float* pbias = bias)
            Sgemm(transA, transB, m, n, k, 1f, a, lda, b, ldb, 0f, c, ldc, maxThreads, Avx512F.IsSupported,
                new Epilogue(bias.IsEmpty ? null : pbias, act));
    }

    /// <param name="wide">use the AVX-512 6×32 micro-kernel (ignored without AVX-512); false forces the AVX2 6×16
    /// kernel (tests cover both paths; benchmarks compare them).</param>
    public static void Sgemm(bool transA, bool transB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc,
        int maxThreads, bool wide) => Sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, maxThreads, wide, default);

    /// <summary>
    /// op(B) (K×N) packed once into the kernel's column panels, for products that reuse one B many times (a Linear
    /// weight in inference): panel J holds columns [J·w, J·w + w) as K rows of w floats (w = 32 on the AVX-512
    /// path, 16 on AVX2), zero past N, so any k block of it is the layout <see cref="PackB"/> writes per call. The
    /// panels live in 64-byte aligned native memory, freed by the finalizer.
    /// </summary>
    public sealed class PackedB
    {
        /// <summary>64-byte aligned native memory: outside the GC heap, so a model's worth of packed weights does not
        /// change when the GC collects (on the GC's pinned heap, +0.7 GB of packed BLIP weights left the collector
        /// running less often, and un-disposed activations page-faulted fresh memory: encode 0.75 → 1.5 s).</summary>
        internal readonly float* Data;
        public int K { get; }
        public int N { get; }
        /// <summary>Packed for the AVX-512 6×32 kernel (32-wide panels); else the AVX2 6×16 kernel.</summary>
        public bool Wide { get; }
        public long Bytes { get; }

        internal PackedB(int k, int n, bool wide)
        {
            K = k; N = n; Wide = wide;
            Bytes = PackedBytes(k, n, wide);
            Data = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)Bytes, 64);
        }

        ~PackedB() => System.Runtime.InteropServices.NativeMemory.AlignedFree(Data);
    }

    /// <summary>Bytes of op(B) (K×N) packed by <see cref="Pack"/> with the same <paramref name="wide"/> request:
    /// whole panels, zero-padded past N.</summary>
    internal static long PackedBytes(int k, int n, bool wide)
    {
        int width = ResolveWide(wide) ? NRW : NR;
        return Math.Max(1, (long)(n + width - 1) / width * width * k) * sizeof(float);
    }

    /// <summary>Whether a request for the 6×32 kernel gets it on this CPU (AVX-512, not turned off).</summary>
    private static bool ResolveWide(bool wide) => wide && Avx512F.IsSupported && WideEnabled;

    /// <summary>Packs op(B) (K×N; B stored N×K when <paramref name="transB"/>, as a Linear weight is) for
    /// <see cref="SgemmBiasPacked"/>. Requires <see cref="IsAccelerated"/>.</summary>
    public static PackedB Pack(bool transB, int k, int n, ReadOnlySpan<float> b, int ldb) =>
        Pack(transB, k, n, b, ldb, wide: true);

    /// <param name="wide">false packs for the AVX2 6×16 kernel even on AVX-512 machines (tests cover both).</param>
    internal static PackedB Pack(bool transB, int k, int n, ReadOnlySpan<float> b, int ldb, bool wide)
    {
        if (!IsAccelerated) throw new PlatformNotSupportedException("packed GEMM operands need AVX2 + FMA");
        Gemm.Check(false, transB, 1, n, k, k, k, b.Length, ldb, n, n);
        var packed = new PackedB(k, n, ResolveWide(wide));
        int width = packed.Wide ? NRW : NR;
        fixed (float* pb = b)
        {
            float* dst = packed.Data;
            for (int j = 0; j < n; j += width)
                PackB(transB, pb, ldb, 0, k, j, Math.Min(width, n - j), dst + (nint)(j / width) * k * width, width);
        }
        return packed;
    }

    /// <summary>C = act(A·op(B) + bias) with op(B) packed beforehand by <see cref="Pack"/>: the same kernel, blocks and
    /// order of operations as <see cref="SgemmBias"/>, so the same bits, without packing B on every call (at 197
    /// rows that packing was 12–18% of a ViT-B Linear's time).</summary>
    public static void SgemmBiasPacked(int m, ReadOnlySpan<float> a, int lda, PackedB b, Span<float> c, int ldc,
        ReadOnlySpan<float> bias, GemmEpilogue act, int maxThreads)
    {
        int n = b.N, k = b.K;
        Gemm.Check(false, false, m, n, k, a.Length, lda, (int)Math.Min(int.MaxValue, (long)k * n), n, c.Length, ldc);
        if (!bias.IsEmpty && bias.Length < n) throw new ArgumentException($"GEMM bias has {bias.Length} values for {n} columns");
        if (m == 0 || n == 0) return;
        fixed (float* pbias = bias)
        fixed (float* pa = a)
        fixed (float* pc = c)
        {
            var epi = new Epilogue(bias.IsEmpty ? null : pbias, act);
            if (k == 0)
            {
                ScaleC(m, n, 0f, c, ldc);
                epi.Apply(pc, ldc, 0, m, 0, n);
                return;
            }
            Run(false, false, m, n, k, 1f, pa, lda, null, 0, 0f, pc, ldc, maxThreads, b.Wide, epi, b.Data);
        }
        GC.KeepAlive(b); // its finalizer frees the panels
    }

    private static void Sgemm(bool transA, bool transB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc,
        int maxThreads, bool wide, Epilogue epi)
    {
        wide = ResolveWide(wide);
        if (m == 0 || n == 0) return;
        if (k == 0 || alpha == 0)
        {
            ScaleC(m, n, beta, c, ldc);
            fixed (float* pc = c) epi.Apply(pc, ldc, 0, m, 0, n);
            return;
        }
        float[]? aT = null;
        try
        {
            // With AVX the blocked kernel packs Aᵀ's row blocks itself (see Block) unless each thread's columns span
            // several NC blocks: then that packing would be repeated per block (measured ~9% slower for 768×3072×1576
            // than one transpose up front). The portable path always transposes.
            if (transA && (!IsAccelerated || n > NC * Math.Max(1, Math.Min(maxThreads, Environment.ProcessorCount))))
            {
                // op(A) = Aᵀ: A is stored K×M. Transpose once to M×K so the kernel can read rows in place.
                aT = ArrayPool<float>.Shared.Rent(m * k);
                TransposeInto(a, lda, k, m, aT, maxThreads > 1);
                a = aT.AsSpan(0, m * k);
                lda = k;
                transA = false;
            }
            fixed (float* pa = a)
            fixed (float* pb = b)
            fixed (float* pc = c)
            {
                Run(transA, transB, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc, maxThreads, wide, epi, null);
            }
        }
        finally
        {
            if (aT is not null) ArrayPool<float>.Shared.Return(aT);
        }
    }

    /// <param name="prepacked">op(B) packed whole by <see cref="Pack"/> (then b is unused), or null.</param>
    private static void Run(bool transA, bool transB, int m, int n, int k, float alpha, float* a, int lda, float* b, int ldb,
        float beta, float* c, int ldc, int maxThreads, bool wide, Epilogue epi, float* prepacked)
    {
        long flops = 2L * m * n * k;
        // Below ~4 MFLOP the fork/join of Parallel.For costs more than the second core saves.
        int threads = maxThreads <= 1 || flops < (1L << 22) ? 1 : Math.Min(maxThreads, Environment.ProcessorCount);
        if (threads <= 1)
        {
            Block(transA, transB, 0, m, 0, n, k, alpha, a, lda, b, ldb, beta, c, ldc, wide, epi, prepacked);
            return;
        }
        // Split columns in whole 16-wide panels when there are enough of them; else rows in whole 6-row tiles.
        int nrW = wide ? NRW : NR;
        int panels = (n + nrW - 1) / nrW, tiles = (m + MR - 1) / MR;
        bool byCols = panels >= 4 * threads || panels >= tiles;
        int units = byCols ? panels : tiles;
        threads = Math.Min(threads, units);
        if (threads <= 1)
        {
            Block(transA, transB, 0, m, 0, n, k, alpha, a, lda, b, ldb, beta, c, ldc, wide, epi, prepacked);
            return;
        }
        nint ap = (nint)a, bp = (nint)b, cp = (nint)c, pp = (nint)prepacked;
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
        {
            int u0 = (int)((long)units * t / threads), u1 = (int)((long)units * (t + 1) / threads);
            if (byCols)
                Block(transA, transB, 0, m, u0 * nrW, Math.Min(n, u1 * nrW), k, alpha, (float*)ap, lda, (float*)bp, ldb, beta, (float*)cp, ldc, wide, epi, (float*)pp);
            else
                Block(transA, transB, u0 * MR, Math.Min(m, u1 * MR), 0, n, k, alpha, (float*)ap, lda, (float*)bp, ldb, beta, (float*)cp, ldc, wide, epi, (float*)pp);
        });
    }

    /// <summary>One thread's share: C[m0..m1, n0..n1], with its own pooled B packing buffer (none when op(B) comes
    /// <paramref name="prepacked"/>: n0 is then a multiple of the panel width, so its panels are read in place).</summary>
    private static void Block(bool transA, bool transB, int m0, int m1, int n0, int n1, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc, bool wide, Epilogue epi, float* prepacked)
    {
        if (!IsAccelerated)
        {
            Portable(transB, m0, m1, n0, n1, k, alpha, a, lda, b, ldb, beta, c, ldc);
            epi.Apply(c, ldc, m0, m1, n0, n1);
            return;
        }
        int nrW = wide ? NRW : NR;
        int kcB = wide ? KcWide : KC, mcB = wide ? McWide : MC;
        int ncMax = Math.Min(NC, RoundUp(n1 - n0, nrW));
        int kcMax = Math.Min(kcB, k);
        if (prepacked != null && (long)(m1 - m0) * kcMax * sizeof(float) <= PrepackedAllRowsBytes) mcB = m1 - m0;
        // +16 floats so the buffer can be aligned to 64 bytes by hand (pooled arrays are only 8/16-byte aligned).
        float[]? buf = prepacked == null ? ArrayPool<float>.Shared.Rent(kcMax * ncMax + 16) : null;
        // op(A) = Aᵀ (A stored K×M): each MC×KC block of op(A) is transposed into this per-thread buffer (row
        // stride kc) just before its column panels run, so the micro-kernel reads rows in place as usual.
        // Row stride kc + 16 rounded to 16 floats: a stride of exactly 4 KiB (kc = 1024) would put the 6 rows a
        // micro-kernel reads into the same L1 set.
        float[]? aBuf = transA ? ArrayPool<float>.Shared.Rent(Math.Min(mcB, m1 - m0) * (RoundUp(kcMax, 16) + 16) + 16) : null;
        try
        {
            fixed (float* raw = buf)
            fixed (float* rawA = aBuf)
            {
                float* packed = (float*)(((nint)raw + 63) & ~(nint)63);
                float* packedA = (float*)(((nint)rawA + 63) & ~(nint)63);
                for (int jc = n0; jc < n1; jc += NC)
                {
                    int nc = Math.Min(NC, n1 - jc);
                    for (int pc = 0; pc < k; pc += kcMax)
                    {
                        int kc = Math.Min(kcMax, k - pc);
                        if (prepacked == null) PackB(transB, b, ldb, pc, kc, jc, nc, packed, nrW);
                        // The first k block applies beta to C's old contents; later blocks accumulate.
                        float betaBlock = pc == 0 ? beta : 1f;
                        for (int ic = m0; ic < m1; ic += mcB)
                        {
                            int mc = Math.Min(mcB, m1 - ic);
                            float* aBlock;
                            int ldaBlock;
                            if (transA)
                            {
                                ldaBlock = RoundUp(kc, 16) + 16;
                                PackATransposed(a, lda, pc, kc, ic, mc, packedA, ldaBlock);
                                aBlock = packedA;
                            }
                            else
                            {
                                aBlock = a + (nint)ic * lda + pc;
                                ldaBlock = lda;
                            }
                            for (int jr = 0; jr < nc; jr += nrW)
                            {
                                int nr = Math.Min(nrW, nc - jr);
                                float* bPanel = prepacked == null ? packed + jr * kc : prepacked + (nint)((jc + jr) / nrW) * k * nrW + pc * nrW;
                                for (int ir = 0; ir < mc; ir += MR)
                                {
                                    int mr = Math.Min(MR, mc - ir);
                                    float* aTile = aBlock + (nint)ir * ldaBlock;
                                    float* cTile = c + (nint)(ic + ir) * ldc + jc + jr;
                                    if (wide)
                                    {
                                        if (mr == MR && nr == NRW) Kernel6x32(kc, aTile, ldaBlock, bPanel, cTile, ldc, alpha, betaBlock);
                                        else KernelEdge32(kc, aTile, ldaBlock, mr, nr, bPanel, cTile, ldc, alpha, betaBlock);
                                    }
                                    else if (mr == MR && nr == NR)
                                    {
                                        Kernel6x16(kc, aTile, ldaBlock, bPanel, cTile, ldc, alpha, betaBlock);
                                    }
                                    else
                                    {
                                        KernelEdge(kc, aTile, ldaBlock, mr, nr, bPanel, cTile, ldc, alpha, betaBlock);
                                    }
                                }
                            }
                            // This MC×NC block of C is final after the last k block: finish it while it is in L2.
                            if (pc + kc == k) epi.Apply(c, ldc, ic, ic + mc, jc, jc + nc);
                        }
                    }
                }
            }
        }
        finally
        {
            if (buf is not null) ArrayPool<float>.Shared.Return(buf);
            if (aBuf is not null) ArrayPool<float>.Shared.Return(aBuf);
        }
    }

    /// <summary>dst (mc × kc, row stride ldd) = op(A)[ic..ic+mc, pc..pc+kc] for op(A) = Aᵀ, A stored K×M with row
    /// stride lda: groups of 8 stored rows (k values) go through the 8×8 register transpose.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackATransposed(float* a, int lda, int pc, int kc, int ic, int mc, float* dst, int ldd)
    {
        float* src = a + (nint)pc * lda + ic;
        int p = 0;
        for (; p + 8 <= kc; p += 8)
            PackTransposed8(src + (nint)p * lda, lda, mc, dst + p, ldd);
        for (; p < kc; p++)
        {
            float* s = src + (nint)p * lda;
            for (int i = 0; i < mc; i++) dst[(nint)i * ldd + p] = s[i];
        }
    }

    /// <summary>What <see cref="SgemmBias"/> applies to finished C blocks: + bias[j], then the activation.</summary>
    private readonly struct Epilogue(float* bias, GemmEpilogue act)
    {
        public void Apply(float* c, int ldc, int m0, int m1, int n0, int n1)
        {
            if (bias == null && act == GemmEpilogue.None) return;
            int n = n1 - n0;
            var bs = bias == null ? default : new ReadOnlySpan<float>(bias + n0, n);
            for (int i = m0; i < m1; i++)
            {
                var row = new Span<float>(c + (nint)i * ldc + n0, n);
                if (bias != null) System.Numerics.Tensors.TensorPrimitives.Add(row, bs, row);
                if (act == GemmEpilogue.Gelu) FastMath.Gelu(row, row);
                else if (act == GemmEpilogue.QuickGelu) FastMath.QuickGelu(row, row);
            }
        }
    }

    private static int RoundUp(int x, int r) => (x + r - 1) / r * r;

    /// <summary>Packs op(B)[pc..pc+kc, jc..jc+nc] into ⌈nc/16⌉ panels, each kc×16 with element (p, j) at p·16 + j.
    /// Columns past nc are zero so edge panels run the same kernel.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackB(bool transB, float* b, int ldb, int pc, int kc, int jc, int nc, float* dst, int width)
    {
        for (int jr = 0; jr < nc; jr += width)
        {
            int nr = Math.Min(width, nc - jr);
            float* panel = dst + jr * kc;
            if (!transB)
            {
                float* src = b + (nint)pc * ldb + jc + jr;
                if (nr == width)
                {
                    for (int p = 0; p < kc; p++, src += ldb)
                        for (int j = 0; j < width; j += 8)
                            Vector256.Store(Vector256.Load(src + j), panel + p * width + j);
                }
                else
                {
                    for (int p = 0; p < kc; p++, src += ldb)
                    {
                        float* d = panel + p * width;
                        int j = 0;
                        for (; j < nr; j++) d[j] = src[j];
                        for (; j < width; j++) d[j] = 0f;
                    }
                }
            }
            else
            {
                // op(B) = Bᵀ: B stored N×K, element (p, j) at b[j·ldb + p] (every Linear layer's weight).
                // Whole groups of 8 stored rows go through 8×8 register transposes; the rest element by element.
                int j8 = Avx.IsSupported ? nr / 8 * 8 : 0;
                for (int j = 0; j < j8; j += 8)
                    PackTransposed8(b + (nint)(jc + jr + j) * ldb + pc, ldb, kc, panel + j, width);
                for (int j = j8; j < width; j++)
                {
                    if (j < nr)
                    {
                        float* src = b + (nint)(jc + jr + j) * ldb + pc;
                        for (int p = 0; p < kc; p++) panel[p * width + j] = src[p];
                    }
                    else
                    {
                        for (int p = 0; p < kc; p++) panel[p * width + j] = 0f;
                    }
                }
            }
        }
    }

    /// <summary>dst[c·ldd + r] = src[r·lds + c] for an 8×8 tile, in registers (unpack pairs, shuffle quads, swap
    /// 128-bit halves). Packs op(B) = Bᵀ here and transposes the output gradient in LinearGradKernels.Prep.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Transpose8x8(float* src, int lds, float* dst, int ldd)
    {
        var r0 = Avx.LoadVector256(src); var r1 = Avx.LoadVector256(src + lds);
        var r2 = Avx.LoadVector256(src + 2 * lds); var r3 = Avx.LoadVector256(src + 3 * lds);
        var r4 = Avx.LoadVector256(src + 4 * lds); var r5 = Avx.LoadVector256(src + 5 * lds);
        var r6 = Avx.LoadVector256(src + 6 * lds); var r7 = Avx.LoadVector256(src + 7 * lds);
        var t0 = Avx.UnpackLow(r0, r1); var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3); var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5); var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7); var t7 = Avx.UnpackHigh(r6, r7);
        var u0 = Avx.Shuffle(t0, t2, 0x44); var u1 = Avx.Shuffle(t0, t2, 0xEE);
        var u2 = Avx.Shuffle(t1, t3, 0x44); var u3 = Avx.Shuffle(t1, t3, 0xEE);
        var u4 = Avx.Shuffle(t4, t6, 0x44); var u5 = Avx.Shuffle(t4, t6, 0xEE);
        var u6 = Avx.Shuffle(t5, t7, 0x44); var u7 = Avx.Shuffle(t5, t7, 0xEE);
        Avx.Store(dst, Avx.Permute2x128(u0, u4, 0x20));
        Avx.Store(dst + ldd, Avx.Permute2x128(u1, u5, 0x20));
        Avx.Store(dst + 2 * ldd, Avx.Permute2x128(u2, u6, 0x20));
        Avx.Store(dst + 3 * ldd, Avx.Permute2x128(u3, u7, 0x20));
        Avx.Store(dst + 4 * ldd, Avx.Permute2x128(u0, u4, 0x31));
        Avx.Store(dst + 5 * ldd, Avx.Permute2x128(u1, u5, 0x31));
        Avx.Store(dst + 6 * ldd, Avx.Permute2x128(u2, u6, 0x31));
        Avx.Store(dst + 7 * ldd, Avx.Permute2x128(u3, u7, 0x31));
    }

    /// <summary>Writes the kc×8 block (p, j) = src[j·ldb + p] into dst rows of <paramref name="width"/> floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackTransposed8(float* src, int ldb, int kc, float* dst, int width)
    {
        float* s0 = src, s1 = s0 + ldb, s2 = s1 + ldb, s3 = s2 + ldb, s4 = s3 + ldb, s5 = s4 + ldb, s6 = s5 + ldb, s7 = s6 + ldb;
        int p = 0;
        for (; p + 8 <= kc; p += 8) Transpose8x8(src + p, ldb, dst + (nint)p * width, width);
        for (; p < kc; p++)
        {
            float* d = dst + (nint)p * width;
            d[0] = s0[p]; d[1] = s1[p]; d[2] = s2[p]; d[3] = s3[p]; d[4] = s4[p]; d[5] = s5[p]; d[6] = s6[p]; d[7] = s7[p];
        }
    }

    /// <summary>The 6×16 micro-kernel: C[6×16] = alpha·A[6×kc]·Bpanel[kc×16] + beta·C (beta == 0: C's old contents,
    /// NaN included, are not read).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel6x16(int kc, float* a, int lda, float* b, float* c, int ldc, float alpha, float beta)
    {
        float* a0 = a, a1 = a + lda, a2 = a1 + lda, a3 = a2 + lda, a4 = a3 + lda, a5 = a4 + lda;
        float* c0 = c, c1 = c + ldc, c2 = c1 + ldc, c3 = c2 + ldc, c4 = c3 + ldc, c5 = c4 + ldc;
        // A 16-float row segment can straddle two cache lines: touch both ends.
        Sse.Prefetch0(c0); Sse.Prefetch0(c0 + 15);
        Sse.Prefetch0(c1); Sse.Prefetch0(c1 + 15);
        Sse.Prefetch0(c2); Sse.Prefetch0(c2 + 15);
        Sse.Prefetch0(c3); Sse.Prefetch0(c3 + 15);
        Sse.Prefetch0(c4); Sse.Prefetch0(c4 + 15);
        Sse.Prefetch0(c5); Sse.Prefetch0(c5 + 15);

        Vector256<float> x00 = default, x01 = default, x10 = default, x11 = default, x20 = default, x21 = default;
        Vector256<float> x30 = default, x31 = default, x40 = default, x41 = default, x50 = default, x51 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector256.Load(b);
            var b1 = Vector256.Load(b + 8);
            b += NR;
            var v = Vector256.Create(a0[p]);
            x00 = Fma.MultiplyAdd(v, b0, x00); x01 = Fma.MultiplyAdd(v, b1, x01);
            v = Vector256.Create(a1[p]);
            x10 = Fma.MultiplyAdd(v, b0, x10); x11 = Fma.MultiplyAdd(v, b1, x11);
            v = Vector256.Create(a2[p]);
            x20 = Fma.MultiplyAdd(v, b0, x20); x21 = Fma.MultiplyAdd(v, b1, x21);
            v = Vector256.Create(a3[p]);
            x30 = Fma.MultiplyAdd(v, b0, x30); x31 = Fma.MultiplyAdd(v, b1, x31);
            v = Vector256.Create(a4[p]);
            x40 = Fma.MultiplyAdd(v, b0, x40); x41 = Fma.MultiplyAdd(v, b1, x41);
            v = Vector256.Create(a5[p]);
            x50 = Fma.MultiplyAdd(v, b0, x50); x51 = Fma.MultiplyAdd(v, b1, x51);
        }
        var va = Vector256.Create(alpha);
        if (beta == 0f)
        {
            Vector256.Store(x00 * va, c0); Vector256.Store(x01 * va, c0 + 8);
            Vector256.Store(x10 * va, c1); Vector256.Store(x11 * va, c1 + 8);
            Vector256.Store(x20 * va, c2); Vector256.Store(x21 * va, c2 + 8);
            Vector256.Store(x30 * va, c3); Vector256.Store(x31 * va, c3 + 8);
            Vector256.Store(x40 * va, c4); Vector256.Store(x41 * va, c4 + 8);
            Vector256.Store(x50 * va, c5); Vector256.Store(x51 * va, c5 + 8);
        }
        else if (beta == 1f)
        {
            Vector256.Store(Fma.MultiplyAdd(x00, va, Vector256.Load(c0)), c0); Vector256.Store(Fma.MultiplyAdd(x01, va, Vector256.Load(c0 + 8)), c0 + 8);
            Vector256.Store(Fma.MultiplyAdd(x10, va, Vector256.Load(c1)), c1); Vector256.Store(Fma.MultiplyAdd(x11, va, Vector256.Load(c1 + 8)), c1 + 8);
            Vector256.Store(Fma.MultiplyAdd(x20, va, Vector256.Load(c2)), c2); Vector256.Store(Fma.MultiplyAdd(x21, va, Vector256.Load(c2 + 8)), c2 + 8);
            Vector256.Store(Fma.MultiplyAdd(x30, va, Vector256.Load(c3)), c3); Vector256.Store(Fma.MultiplyAdd(x31, va, Vector256.Load(c3 + 8)), c3 + 8);
            Vector256.Store(Fma.MultiplyAdd(x40, va, Vector256.Load(c4)), c4); Vector256.Store(Fma.MultiplyAdd(x41, va, Vector256.Load(c4 + 8)), c4 + 8);
            Vector256.Store(Fma.MultiplyAdd(x50, va, Vector256.Load(c5)), c5); Vector256.Store(Fma.MultiplyAdd(x51, va, Vector256.Load(c5 + 8)), c5 + 8);
        }
        else
        {
            var vb = Vector256.Create(beta);
            Vector256.Store(Fma.MultiplyAdd(x00, va, Vector256.Load(c0) * vb), c0); Vector256.Store(Fma.MultiplyAdd(x01, va, Vector256.Load(c0 + 8) * vb), c0 + 8);
            Vector256.Store(Fma.MultiplyAdd(x10, va, Vector256.Load(c1) * vb), c1); Vector256.Store(Fma.MultiplyAdd(x11, va, Vector256.Load(c1 + 8) * vb), c1 + 8);
            Vector256.Store(Fma.MultiplyAdd(x20, va, Vector256.Load(c2) * vb), c2); Vector256.Store(Fma.MultiplyAdd(x21, va, Vector256.Load(c2 + 8) * vb), c2 + 8);
            Vector256.Store(Fma.MultiplyAdd(x30, va, Vector256.Load(c3) * vb), c3); Vector256.Store(Fma.MultiplyAdd(x31, va, Vector256.Load(c3 + 8) * vb), c3 + 8);
            Vector256.Store(Fma.MultiplyAdd(x40, va, Vector256.Load(c4) * vb), c4); Vector256.Store(Fma.MultiplyAdd(x41, va, Vector256.Load(c4 + 8) * vb), c4 + 8);
            Vector256.Store(Fma.MultiplyAdd(x50, va, Vector256.Load(c5) * vb), c5); Vector256.Store(Fma.MultiplyAdd(x51, va, Vector256.Load(c5 + 8) * vb), c5 + 8);
        }
    }

    /// <summary>Edge tile (mr &lt; 6 rows and/or nr &lt; 16 columns): same k loop over valid rows, results
    /// written element by element to the valid part of C only. Missing A rows alias row 0 (never out of bounds)
    /// and their results are discarded.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void KernelEdge(int kc, float* a, int lda, int mr, int nr, float* b, float* c, int ldc, float alpha, float beta)
    {
        float* tile = stackalloc float[MR * NR];
        float* a0 = a;
        float* a1 = mr > 1 ? a + lda : a;
        float* a2 = mr > 2 ? a + 2 * (nint)lda : a;
        float* a3 = mr > 3 ? a + 3 * (nint)lda : a;
        float* a4 = mr > 4 ? a + 4 * (nint)lda : a;
        float* a5 = mr > 5 ? a + 5 * (nint)lda : a;
        Vector256<float> x00 = default, x01 = default, x10 = default, x11 = default, x20 = default, x21 = default;
        Vector256<float> x30 = default, x31 = default, x40 = default, x41 = default, x50 = default, x51 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector256.Load(b);
            var b1 = Vector256.Load(b + 8);
            b += NR;
            var v = Vector256.Create(a0[p]);
            x00 = Fma.MultiplyAdd(v, b0, x00); x01 = Fma.MultiplyAdd(v, b1, x01);
            v = Vector256.Create(a1[p]);
            x10 = Fma.MultiplyAdd(v, b0, x10); x11 = Fma.MultiplyAdd(v, b1, x11);
            v = Vector256.Create(a2[p]);
            x20 = Fma.MultiplyAdd(v, b0, x20); x21 = Fma.MultiplyAdd(v, b1, x21);
            v = Vector256.Create(a3[p]);
            x30 = Fma.MultiplyAdd(v, b0, x30); x31 = Fma.MultiplyAdd(v, b1, x31);
            v = Vector256.Create(a4[p]);
            x40 = Fma.MultiplyAdd(v, b0, x40); x41 = Fma.MultiplyAdd(v, b1, x41);
            v = Vector256.Create(a5[p]);
            x50 = Fma.MultiplyAdd(v, b0, x50); x51 = Fma.MultiplyAdd(v, b1, x51);
        }
        Vector256.Store(x00, tile); Vector256.Store(x01, tile + 8);
        Vector256.Store(x10, tile + 16); Vector256.Store(x11, tile + 24);
        Vector256.Store(x20, tile + 32); Vector256.Store(x21, tile + 40);
        Vector256.Store(x30, tile + 48); Vector256.Store(x31, tile + 56);
        Vector256.Store(x40, tile + 64); Vector256.Store(x41, tile + 72);
        Vector256.Store(x50, tile + 80); Vector256.Store(x51, tile + 88);
        for (int i = 0; i < mr; i++)
        {
            float* ci = c + (nint)i * ldc;
            float* ti = tile + i * NR;
            if (beta == 0f)
                for (int j = 0; j < nr; j++) ci[j] = alpha * ti[j];
            else
                for (int j = 0; j < nr; j++) ci[j] = alpha * ti[j] + beta * ci[j];
        }
    }

    /// <summary>AVX-512 variant of the micro-kernel: 6×32 with 12 Vector512 accumulators. Each k step does the same
    /// 8 loads/broadcasts as the 6×16 kernel for twice the flops; on Zen 4 (512-bit ops split over the two 256-bit
    /// FMA pipes) that relieves the load ports at the same FMA throughput.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel6x32(int kc, float* a, int lda, float* b, float* c, int ldc, float alpha, float beta)
    {
        float* a0 = a, a1 = a + lda, a2 = a1 + lda, a3 = a2 + lda, a4 = a3 + lda, a5 = a4 + lda;
        float* c0 = c, c1 = c + ldc, c2 = c1 + ldc, c3 = c2 + ldc, c4 = c3 + ldc, c5 = c4 + ldc;
        // 32 floats span two or three cache lines.
        Sse.Prefetch0(c0); Sse.Prefetch0(c0 + 16); Sse.Prefetch0(c0 + 31);
        Sse.Prefetch0(c1); Sse.Prefetch0(c1 + 16); Sse.Prefetch0(c1 + 31);
        Sse.Prefetch0(c2); Sse.Prefetch0(c2 + 16); Sse.Prefetch0(c2 + 31);
        Sse.Prefetch0(c3); Sse.Prefetch0(c3 + 16); Sse.Prefetch0(c3 + 31);
        Sse.Prefetch0(c4); Sse.Prefetch0(c4 + 16); Sse.Prefetch0(c4 + 31);
        Sse.Prefetch0(c5); Sse.Prefetch0(c5 + 16); Sse.Prefetch0(c5 + 31);

        Vector512<float> x00 = default, x01 = default, x10 = default, x11 = default, x20 = default, x21 = default;
        Vector512<float> x30 = default, x31 = default, x40 = default, x41 = default, x50 = default, x51 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + 16);
            b += NRW;
            var v = Vector512.Create(a0[p]);
            x00 = Avx512F.FusedMultiplyAdd(v, b0, x00); x01 = Avx512F.FusedMultiplyAdd(v, b1, x01);
            v = Vector512.Create(a1[p]);
            x10 = Avx512F.FusedMultiplyAdd(v, b0, x10); x11 = Avx512F.FusedMultiplyAdd(v, b1, x11);
            v = Vector512.Create(a2[p]);
            x20 = Avx512F.FusedMultiplyAdd(v, b0, x20); x21 = Avx512F.FusedMultiplyAdd(v, b1, x21);
            v = Vector512.Create(a3[p]);
            x30 = Avx512F.FusedMultiplyAdd(v, b0, x30); x31 = Avx512F.FusedMultiplyAdd(v, b1, x31);
            v = Vector512.Create(a4[p]);
            x40 = Avx512F.FusedMultiplyAdd(v, b0, x40); x41 = Avx512F.FusedMultiplyAdd(v, b1, x41);
            v = Vector512.Create(a5[p]);
            x50 = Avx512F.FusedMultiplyAdd(v, b0, x50); x51 = Avx512F.FusedMultiplyAdd(v, b1, x51);
        }
        Store32(x00, x01, c0, alpha, beta);
        Store32(x10, x11, c1, alpha, beta);
        Store32(x20, x21, c2, alpha, beta);
        Store32(x30, x31, c3, alpha, beta);
        Store32(x40, x41, c4, alpha, beta);
        Store32(x50, x51, c5, alpha, beta);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store32(Vector512<float> lo, Vector512<float> hi, float* c, float alpha, float beta)
    {
        var va = Vector512.Create(alpha);
        if (beta == 0f)
        {
            Vector512.Store(lo * va, c); Vector512.Store(hi * va, c + 16);
        }
        else if (beta == 1f)
        {
            Vector512.Store(Avx512F.FusedMultiplyAdd(lo, va, Vector512.Load(c)), c);
            Vector512.Store(Avx512F.FusedMultiplyAdd(hi, va, Vector512.Load(c + 16)), c + 16);
        }
        else
        {
            var vb = Vector512.Create(beta);
            Vector512.Store(Avx512F.FusedMultiplyAdd(lo, va, Vector512.Load(c) * vb), c);
            Vector512.Store(Avx512F.FusedMultiplyAdd(hi, va, Vector512.Load(c + 16) * vb), c + 16);
        }
    }

    /// <summary>Edge tile of the 6×32 kernel (see <see cref="KernelEdge"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void KernelEdge32(int kc, float* a, int lda, int mr, int nr, float* b, float* c, int ldc, float alpha, float beta)
    {
        float* tile = stackalloc float[MR * NRW];
        float* a0 = a;
        float* a1 = mr > 1 ? a + lda : a;
        float* a2 = mr > 2 ? a + 2 * (nint)lda : a;
        float* a3 = mr > 3 ? a + 3 * (nint)lda : a;
        float* a4 = mr > 4 ? a + 4 * (nint)lda : a;
        float* a5 = mr > 5 ? a + 5 * (nint)lda : a;
        Vector512<float> x00 = default, x01 = default, x10 = default, x11 = default, x20 = default, x21 = default;
        Vector512<float> x30 = default, x31 = default, x40 = default, x41 = default, x50 = default, x51 = default;
        if (nr <= 16)
        {
            // Only the panel's first 16 columns are wanted (e.g. the last 5 of 197 attention scores): half the FMAs.
            // Each element's sum runs in the same order as below, so the bits do not depend on the branch.
            for (int p = 0; p < kc; p++)
            {
                var b0 = Vector512.Load(b);
                b += NRW;
                x00 = Avx512F.FusedMultiplyAdd(Vector512.Create(a0[p]), b0, x00);
                x10 = Avx512F.FusedMultiplyAdd(Vector512.Create(a1[p]), b0, x10);
                x20 = Avx512F.FusedMultiplyAdd(Vector512.Create(a2[p]), b0, x20);
                x30 = Avx512F.FusedMultiplyAdd(Vector512.Create(a3[p]), b0, x30);
                x40 = Avx512F.FusedMultiplyAdd(Vector512.Create(a4[p]), b0, x40);
                x50 = Avx512F.FusedMultiplyAdd(Vector512.Create(a5[p]), b0, x50);
            }
        }
        else
        {
            for (int p = 0; p < kc; p++)
            {
                var b0 = Vector512.Load(b);
                var b1 = Vector512.Load(b + 16);
                b += NRW;
                var v = Vector512.Create(a0[p]);
                x00 = Avx512F.FusedMultiplyAdd(v, b0, x00); x01 = Avx512F.FusedMultiplyAdd(v, b1, x01);
                v = Vector512.Create(a1[p]);
                x10 = Avx512F.FusedMultiplyAdd(v, b0, x10); x11 = Avx512F.FusedMultiplyAdd(v, b1, x11);
                v = Vector512.Create(a2[p]);
                x20 = Avx512F.FusedMultiplyAdd(v, b0, x20); x21 = Avx512F.FusedMultiplyAdd(v, b1, x21);
                v = Vector512.Create(a3[p]);
                x30 = Avx512F.FusedMultiplyAdd(v, b0, x30); x31 = Avx512F.FusedMultiplyAdd(v, b1, x31);
                v = Vector512.Create(a4[p]);
                x40 = Avx512F.FusedMultiplyAdd(v, b0, x40); x41 = Avx512F.FusedMultiplyAdd(v, b1, x41);
                v = Vector512.Create(a5[p]);
                x50 = Avx512F.FusedMultiplyAdd(v, b0, x50); x51 = Avx512F.FusedMultiplyAdd(v, b1, x51);
            }
        }
        Vector512.Store(x00, tile); Vector512.Store(x01, tile + 16);
        Vector512.Store(x10, tile + 32); Vector512.Store(x11, tile + 48);
        Vector512.Store(x20, tile + 64); Vector512.Store(x21, tile + 80);
        Vector512.Store(x30, tile + 96); Vector512.Store(x31, tile + 112);
        Vector512.Store(x40, tile + 128); Vector512.Store(x41, tile + 144);
        Vector512.Store(x50, tile + 160); Vector512.Store(x51, tile + 176);
        for (int i = 0; i < mr; i++)
        {
            float* ci = c + (nint)i * ldc;
            float* ti = tile + i * NRW;
            if (beta == 0f)
                for (int j = 0; j < nr; j++) ci[j] = alpha * ti[j];
            else
                for (int j = 0; j < nr; j++) ci[j] = alpha * ti[j] + beta * ci[j];
        }
    }

    /// <summary>Without AVX2/FMA: row-by-row AXPY with <see cref="Vector{T}"/> (correct everywhere, not fast).</summary>
    private static void Portable(bool transB, int m0, int m1, int n0, int n1, int k, float alpha,
        float* a, int lda, float* b, int ldb, float beta, float* c, int ldc)
    {
        int n = n1 - n0;
        float[] rowBuf = new float[n];
        float[]? bRow = transB ? new float[n] : null;
        int vw = Vector<float>.Count;
        for (int i = m0; i < m1; i++)
        {
            Array.Clear(rowBuf);
            float* ai = a + (nint)i * lda;
            for (int p = 0; p < k; p++)
            {
                float av = ai[p];
                ReadOnlySpan<float> bp;
                if (transB)
                {
                    for (int j = 0; j < n; j++) bRow![j] = b[(nint)(n0 + j) * ldb + p];
                    bp = bRow;
                }
                else
                {
                    bp = new ReadOnlySpan<float>(b + (nint)p * ldb + n0, n);
                }
                var vav = new Vector<float>(av);
                int j2 = 0;
                for (; j2 <= n - vw; j2 += vw)
                    (new Vector<float>(rowBuf.AsSpan(j2)) + vav * new Vector<float>(bp[j2..])).CopyTo(rowBuf.AsSpan(j2));
                for (; j2 < n; j2++) rowBuf[j2] += av * bp[j2];
            }
            float* ci = c + (nint)i * ldc + n0;
            if (beta == 0f)
                for (int j = 0; j < n; j++) ci[j] = alpha * rowBuf[j];
            else
                for (int j = 0; j < n; j++) ci[j] = alpha * rowBuf[j] + beta * ci[j];
        }
    }

    /// <summary>C = beta·C (beta == 0 writes zeros, ignoring NaN/Inf already in C) — the k == 0 or alpha == 0 case.</summary>
    internal static void ScaleC(int m, int n, float beta, Span<float> c, int ldc)
    {
        if (beta == 1f) return;
        for (int i = 0; i < m; i++)
        {
            var row = c.Slice(i * ldc, n);
            if (beta == 0f) row.Clear();
            else System.Numerics.Tensors.TensorPrimitives.Multiply(row, beta, row);
        }
    }

    /// <summary>dst (cols × rows, row-major) = srcᵀ where src is rows × cols with row stride ld.</summary>
    /// <summary>dst (cols × rows, row-major) = srcᵀ for src rows × cols with row stride ld. Strips of 8 source rows
    /// go through the 8×8 AVX register transpose; large matrices split their column chunks over two threads.</summary>
    internal static void TransposeInto(ReadOnlySpan<float> src, int ld, int rows, int cols, float[] dst, bool parallel = true)
    {
        if (!Avx.IsSupported || rows < 8) { TransposeNaive(src, ld, rows, cols, dst); return; }
        // 128-column chunks: the 8-row strips of one chunk write 128 destination rows, whose lines stay in L1/L2
        // until the next strip fills their other half.
        const int CW = 128;
        int chunks = (cols + CW - 1) / CW;
        int workers = parallel && (long)rows * cols >= (1 << 20) && chunks >= 2 ? Math.Min(2, Environment.ProcessorCount) : 1;
        fixed (float* ps = src)
        fixed (float* pd = dst)
        {
            nint sp = (nint)ps, dp = (nint)pd;
            void Run(int ch0, int ch1)
            {
                float* s = (float*)sp, d = (float*)dp;
                for (int ch = ch0; ch < ch1; ch++)
                {
                    int c0 = ch * CW, cw = Math.Min(CW, cols - c0);
                    int r = 0;
                    for (; r + 8 <= rows; r += 8)
                        PackTransposed8(s + (nint)r * ld + c0, ld, cw, d + (nint)c0 * rows + r, rows);
                    for (; r < rows; r++)
                        for (int c = c0; c < c0 + cw; c++) d[(nint)c * rows + r] = s[(nint)r * ld + c];
                }
            }
            if (workers == 1) Run(0, chunks);
            else Parallel.For(0, workers, w => Run(chunks * w / workers, chunks * (w + 1) / workers));
        }
    }

    /// <summary>Reference for <see cref="TransposeInto"/>: 32×32 blocks, one element at a time.</summary>
    internal static void TransposeNaive(ReadOnlySpan<float> src, int ld, int rows, int cols, float[] dst)
    {
        const int T = 32;
        for (int r0 = 0; r0 < rows; r0 += T)
        {
            int r1 = Math.Min(rows, r0 + T);
            for (int c0 = 0; c0 < cols; c0 += T)
            {
                int c1 = Math.Min(cols, c0 + T);
                for (int r = r0; r < r1; r++)
                {
                    var s = src.Slice(r * ld);
                    for (int cc = c0; cc < c1; cc++) dst[cc * rows + r] = s[cc];
                }
            }
        }
    }
}
