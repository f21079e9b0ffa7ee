using Vlm.Core;
using Vlm.Models.BridgeTower;

namespace Vlm.Models.Tests.BridgeTower;

/// <summary>A training loop that disposes its outputs runs in recycled buffers: the layers let go of their
/// intermediates while recording too (the graph's nodes hold what backward reads), so after <c>Backward()</c> every
/// activation is back in the pool and a warm step allocates no fresh buffer.</summary>
[Collection(BufferPoolCollection.Name)]
public class BridgeTowerMemoryTests
{
    // Sizes chosen so activations are poolable (≥ 4096 floats): 66 text tokens × 64, 82 image tokens × 64. The pool is
    // process-wide: the collection keeps other tests from running beside this one, and these lengths also differ from
    // the BLIP pool test's (70 and 65 tokens).
    private static BridgeTowerConfig Config() => BridgeTowerConfig.FromJson("""
        {"hidden_size": 64, "num_attention_heads": 2, "num_hidden_layers": 2, "contrastive_hidden_size": 32, "logit_scale_init_value": 2.6592,
         "text_config": {"hidden_size": 64, "num_attention_heads": 2, "num_hidden_layers": 3, "intermediate_size": 128,
                         "vocab_size": 100, "max_position_embeddings": 80},
         "vision_config": {"hidden_size": 64, "num_hidden_layers": 3, "image_size": 72, "patch_size": 8}}
        """);

    [Theory]
    [InlineData("itm")]
    [InlineData("contrastive")]
    public void Warm_training_step_allocates_no_fresh_buffers(string head)
    {
        var cfg = Config();
        var itm = head == "itm" ? new BridgeTowerForImageAndTextRetrieval(cfg, null, new Rng(1)) : null;
        var itc = head == "contrastive" ? new BridgeTowerForContrastiveLearning(cfg, null, new Rng(1)) : null;
        BridgeTowerHeadModel m = (BridgeTowerHeadModel?)itm ?? itc!;
        m.Train();   // dropout on: its masked copies must be recycled too
        var ids = Tensor.FromArray(Enumerable.Range(0, 132).Select(i => (long)(i * 7 % 97 + 2)).ToArray(), 2, 66);
        var mask = Tensor.Ones(2, 66);
        var px = Tensor.Randn([2, 3, 72, 72], new Rng(2));
        var labels = Tensor.FromArray(new long[] { 1, 0 }, 2);
        var fresh = new List<long>();
        for (int step = 0; step < 3; step++)
        {
            long before = BufferPool.ThreadFreshAllocations;
            if (itm != null)
                using (var o = itm.Forward(ids, mask, px, labels)) o.Loss!.Backward();
            else
                using (var o = itc!.Forward(ids, mask, px, returnLoss: true)) o.Loss!.Backward();
            foreach (var (_, p) in m.Parameters.Named) { p.Grad?.Dispose(); p.Grad = null; }
            fresh.Add(BufferPool.ThreadFreshAllocations - before);
        }
        Assert.True(fresh[0] >= 20, $"only {fresh[0]} poolable buffers in the first step: the sizes no longer exercise the pool");
        Assert.True(fresh[2] == 0, $"a warm step allocated {fresh[2]} fresh buffers (first step: {fresh[0]}): activations are left to the GC");
    }
}
