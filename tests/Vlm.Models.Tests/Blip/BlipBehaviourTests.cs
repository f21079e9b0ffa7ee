using Vlm.Core;
using Vlm.Core.IO;
using Vlm.Models.Blip;
using Vlm.Models.Generation;
using Vlm.Nn;
using Vlm.TestSupport;

namespace Vlm.Models.Tests.Blip;

public class BlipConfigTests
{
    [Fact]
    public void Fixture_config_takes_hf_defaults_for_absent_keys()
    {
        var c = BlipConfig.Load(Fixtures.Path("blip_vqa", "config.json"));
        Assert.Equal("BlipForQuestionAnswering", c.Architecture);
        Assert.Equal(24, c.ImageTextHiddenSize);
        Assert.Equal(110, c.TextConfig.VocabSize);
        Assert.Equal(108, c.TextConfig.BosTokenId);
        Assert.Equal(0.1f, c.TextConfig.LabelSmoothing);
        // absent → HF BlipTextConfig / BlipVisionConfig defaults
        Assert.Equal(102, c.TextConfig.SepTokenId);
        Assert.Equal(0, c.TextConfig.PadTokenId);
        Assert.Equal(1e-12f, c.TextConfig.LayerNormEps);
        Assert.True(c.TextConfig.IsDecoder);
        Assert.Equal("gelu", c.TextConfig.HiddenAct);
        Assert.Equal(1e-5f, c.VisionConfig.LayerNormEps);
        Assert.Equal(16, c.VisionConfig.NumPatches);
    }

    [Fact]
    public void Empty_config_is_the_hf_default_model()
    {
        var c = BlipConfig.FromJson("{}");
        Assert.Equal(30524, c.TextConfig.VocabSize);
        Assert.Equal(30522, c.TextConfig.BosTokenId);
        Assert.Equal(8, c.TextConfig.NumAttentionHeads);
        Assert.Equal(384, c.VisionConfig.ImageSize);
        Assert.Equal(256, c.ImageTextHiddenSize);
    }

    [Theory]
    [InlineData("{\"model_type\":\"bert\"}", "model_type")]
    [InlineData("{\"text_config\":{\"hidden_act\":\"mish2\"}}", "text_config.hidden_act")]
    [InlineData("{\"vision_config\":{\"hidden_size\":\"big\"}}", "vision_config.hidden_size")]
    [InlineData("{\"text_config\":{\"position_embedding_type\":\"relative_key\"}}", "position_embedding_type")]
    [InlineData("{\"text_config\":{\"hidden_size\":30,\"num_attention_heads\":4}}", "num_attention_heads")]
    [InlineData("{\"text_config\":{\"vocab_size\":50}}", "bos_token_id")]
    [InlineData("{\"text_config\":{\"vocab_size\":200,\"bos_token_id\":1,\"sep_token_id\":300}}", "sep_token_id")]
    [InlineData("not json", "not valid JSON")]
    public void Bad_configs_fail_naming_the_field(string json, string field)
    {
        var e = Assert.Throws<InvalidDataException>(() => BlipConfig.FromJson(json, "cfg.json"));
        Assert.Contains(field, e.Message);
        Assert.Contains("cfg.json", e.Message);
    }
}

[Collection(BufferPoolCollection.Name)]
public class BlipBehaviourTests
{
    private static Tensor In(string caseName, string name) => Fixtures.Load(caseName, "inputs.safetensors")[name];

    [Fact]
    public void Missing_and_unexpected_weights_are_reported_by_name()
    {
        var dir = Directory.CreateTempSubdirectory("blip-load");
        try
        {
            File.Copy(Fixtures.Path("blip_caption", "config.json"), Path.Combine(dir.FullName, "config.json"));
            var w = Fixtures.Load("blip_caption", "model.safetensors");
            w.Remove("text_decoder.cls.predictions.transform.dense.bias");
            w["text_decoder.extra.weight"] = Tensor.Zeros(2);
            SafeTensors.Save(Path.Combine(dir.FullName, "model.safetensors"), w);
            var e = Assert.Throws<InvalidDataException>(() => BlipForConditionalGeneration.FromFolder(dir.FullName));
            Assert.Contains("text_decoder.cls.predictions.transform.dense.bias", e.Message);
            Assert.Contains("text_decoder.extra.weight", e.Message);
        }
        finally { dir.Delete(true); }
    }

    [Fact]
    public void A_stored_tied_decoder_bias_is_accepted()
    {
        var dir = Directory.CreateTempSubdirectory("blip-tied");
        try
        {
            File.Copy(Fixtures.Path("blip_caption", "config.json"), Path.Combine(dir.FullName, "config.json"));
            var w = Fixtures.Load("blip_caption", "model.safetensors");
            w["text_decoder.cls.predictions.decoder.bias"] = w["text_decoder.cls.predictions.bias"];
            SafeTensors.Save(Path.Combine(dir.FullName, "model.safetensors"), w);
            var m = BlipForConditionalGeneration.FromFolder(dir.FullName);
            Assert.Equal(w["text_decoder.cls.predictions.bias"].ToArray(), m.TextDecoder.Bias.ToArray());
        }
        finally { dir.Delete(true); }
    }

    [Fact]
    public void Cached_decoding_steps_give_the_teacher_forced_logits()
    {
        var m = BlipForConditionalGeneration.FromFolder(Fixtures.Path("blip_caption"));
        var px = In("blip_caption", "pixel_values"); var ids = In("blip_caption", "input_ids"); var mask = In("blip_caption", "attention_mask");
        using var _ = Tensor.NoGrad();
        var (full, _, image) = m.Forward(px, ids, mask);                        // (B, T, V)
        var s = new BlipDecoderSession(m.TextDecoder, image, null);
        int t = ids.Size(1);
        // feed the first 3 tokens at once, then one token per step
        var first = s.Step(ids.Narrow(1, 0, 3).Contiguous(), mask.Narrow(1, 0, 3).Contiguous());
        TensorAssert.Close(full.Select(1, 2), first, 1e-5f, 1e-5f, "prefix step");
        for (int i = 3; i < t; i++)
        {
            var step = s.Step(ids.Narrow(1, i, 1).Contiguous(), mask.Narrow(1, 0, i + 1).Contiguous());
            TensorAssert.Close(full.Select(1, i), step, 1e-5f, 1e-5f, $"position {i}");
        }
        Assert.Equal(t, s.CachedLength);
    }

    [Fact]
    public void Beam_search_and_sampling_agree_with_and_without_the_cache_on_blip()
    {
        var m = BlipForConditionalGeneration.FromFolder(Fixtures.Path("blip_caption"));
        var px = In("blip_caption", "pixel_values");
        var prompt = In("blip_caption", "prompt_input_ids"); var pm = In("blip_caption", "prompt_attention_mask");
        using var _ = Tensor.NoGrad();
        foreach (var o in new[]
                 {
                     new GenerationOptions { MaxNewTokens = 6, NumBeams = 3, LengthPenalty = 0.6f },
                     new GenerationOptions { MaxNewTokens = 6, DoSample = true, TopK = 20, TopP = 0.9f, Temperature = 0.8f, RepetitionPenalty = 1.3f, Seed = 3 },
                 })
        {
            var a = m.Generate(px, prompt, pm, o);
            var b = m.Generate(px, prompt, pm, o with { UseCache = false });
            Assert.Equal(a.Sequences.ToInt64Array(), b.Sequences.ToInt64Array());
            Assert.Equal(a.Scores.Count, b.Scores.Count);
            for (int i = 0; i < a.Scores.Count; i++) TensorAssert.Close(b.Scores[i], a.Scores[i], 1e-4f, 1e-4f, $"step {i}");
            // the prompt (bos + prompt minus its trailing [SEP]) is kept in front
            var ids = a.Sequences.ToInt64Array();
            Assert.Equal(108, ids[0]);
        }
    }

    [Fact]
    public void Inference_scope_generates_the_same_bits_with_prepacked_weights()
    {
        var m = BlipForConditionalGeneration.FromFolder(Fixtures.Path("blip_caption"));
        var px = In("blip_caption", "pixel_values");
        var prompt = In("blip_caption", "prompt_input_ids"); var pm = In("blip_caption", "prompt_attention_mask");
        var o = new GenerationOptions { MaxNewTokens = 6, NumBeams = 3, LengthPenalty = 0.6f };
        GenerationResult expected;
        using (Tensor.NoGrad()) expected = m.Generate(px, prompt, pm, o);
        for (int pass = 0; pass < 2; pass++)
        {
            GenerationResult actual;
            using (Tensor.Inference()) actual = m.Generate(px, prompt, pm, o);
            Assert.Equal(expected.Sequences.ToInt64Array(), actual.Sequences.ToInt64Array());
            Assert.Equal(expected.Scores.Count, actual.Scores.Count);
            for (int i = 0; i < expected.Scores.Count; i++) TensorAssert.Equal(expected.Scores[i], actual.Scores[i], $"pass {pass} step {i}");
        }
        if (Vlm.Core.Kernels.GemmManaged.IsAccelerated && Vlm.Core.Kernels.Gemm.Effective == Vlm.Core.Kernels.GemmBackend.Managed)
            Assert.True(PackedWeights.Bytes > 0, "the fixture's Linear weights were not packed");
    }

    [Fact]
    public void No_grad_forward_returns_its_intermediates_to_the_pool()
    {
        // Sizes chosen so activations are poolable (≥ 4096 floats): 65 image tokens × 64, 70 text tokens × 64.
        var c = BlipConfig.FromJson("""
            {"text_config": {"vocab_size": 200, "bos_token_id": 1, "sep_token_id": 2, "pad_token_id": 0, "hidden_size": 64,
                             "num_attention_heads": 4, "num_hidden_layers": 2, "intermediate_size": 128, "encoder_hidden_size": 64},
             "vision_config": {"hidden_size": 64, "image_size": 64, "patch_size": 8, "num_attention_heads": 4,
                               "num_hidden_layers": 2, "intermediate_size": 128}}
            """);
        var vb = VarBuilder.Init(new Rng(3));
        var m = new BlipForConditionalGeneration(vb, c);
        vb.Finish();
        m.Eval();
        var px = Tensor.Randn([1, 3, 64, 64], new Rng(4));
        var ids = Tensor.FromArray(Enumerable.Range(3, 70).Select(i => (long)i).ToArray(), 1, 70);
        long Run()
        {
            long before = BufferPool.ThreadFreshAllocations;
            using (Tensor.NoGrad())
            {
                var image = m.Vision.Forward(px);
                var logits = m.TextDecoder.Forward(ids, null, image, null);
                image.Dispose(); logits.Dispose();
            }
            return BufferPool.ThreadFreshAllocations - before;
        }
        long first = Run(), second = Run();
        Assert.True(first >= 10, $"only {first} poolable buffers allocated: the test's sizes no longer exercise the pool");
        // Every intermediate went back to the pool (the q/k/v selections of the fused projection and the decoder's
        // last hidden states included), so the second run finds all its buffers there.
        Assert.True(second == 0, $"second forward allocated {second} fresh buffers (first: {first}): intermediates are left to the GC");

        // A decoding session's cached keys/values (self and cross, every layer) go back when it is disposed.
        long Decode()
        {
            long before = BufferPool.ThreadFreshAllocations;
            using (Tensor.NoGrad())
            {
                var image = m.Vision.Forward(px);
                using (var session = new BlipDecoderSession(m.TextDecoder, image, null))
                {
                    session.Step(ids, Tensor.Ones(1, 70)).Dispose();
                    session.Reorder([0, 0]);   // beam expansion: the session's own copies of the rows
                    session.Step(Tensor.FromArray(new long[] { 5, 6 }, 2, 1), Tensor.Ones(2, 71)).Dispose();
                }
                image.Dispose();
            }
            return BufferPool.ThreadFreshAllocations - before;
        }
        long d1 = Decode(), d2 = Decode();
        Assert.True(d1 >= 10, $"only {d1} poolable buffers allocated while decoding");
        Assert.True(d2 == 0, $"second decode allocated {d2} fresh buffers (first: {d1}): the cache is left to the GC");
    }

    [Fact]
    public void One_beam_search_equals_greedy_on_blip()
    {
        var m = BlipForConditionalGeneration.FromFolder(Fixtures.Path("blip_caption"));
        var px = In("blip_caption", "pixel_values");
        using var _ = Tensor.NoGrad();
        var image = m.Vision.Forward(px);
        var o = new GenerationOptions { MaxNewTokens = 8, EosTokenIds = [102], PadTokenId = 0 };
        var bos = Tensor.FromArray(new long[] { 108, 108 }, 2, 1);
        var g = Generator.Generate(new BlipDecoderSession(m.TextDecoder, image, null), bos, null, o);
        var b = Generator.GenerateBeamSearch(new BlipDecoderSession(m.TextDecoder, image, null), bos, null, o);
        Assert.Equal(Fixtures.Load("blip_caption", "outputs.safetensors")["generate_unconditional.ids"].ToInt64Array(), g.Sequences.ToInt64Array());
        Assert.Equal(g.Sequences.ToInt64Array(), b.Sequences.ToInt64Array());
    }

    [Fact]
    public void Losses_backpropagate_to_vision_and_text_parameters()
    {
        var (_, store, m) = BlipLoader.Load(Fixtures.Path("blip_vqa"), (vb, c) => new BlipForQuestionAnswering(vb, c));
        m.Train();
        var (loss, _) = m.Forward(In("blip_vqa", "input_ids"), In("blip_vqa", "attention_mask"), In("blip_vqa", "pixel_values"), In("blip_vqa", "labels"));
        // dropout is 0 in BLIP configs, so train mode gives the eval loss
        TensorAssert.Close(Fixtures.Load("blip_vqa", "outputs.safetensors")["loss"], loss.Detach(), 1e-4f, 1e-4f, "train-mode loss");
        loss.Backward();
        foreach (var name in new[] { "vision_model.embeddings.patch_embedding.weight", "text_encoder.encoder.layer.0.crossattention.self.key.weight",
                                     "text_decoder.cls.predictions.bias", "text_decoder.bert.encoder.layer.1.crossattention.self.value.weight" })
        {
            var g = store[name].Grad;
            Assert.NotNull(g);
            Assert.True(g!.ToArray().Any(x => x != 0f) && g.ToArray().All(float.IsFinite), $"{name}: gradient is zero or not finite");
        }
    }

    [Fact]
    public void Bad_inputs_fail_clearly()
    {
        var m = BlipForImageTextRetrieval.FromFolder(Fixtures.Path("blip_itm"));
        var ids = In("blip_itm", "input_ids"); var mask = In("blip_itm", "attention_mask");
        var big = In("blip_itm", "interpolated.pixel_values");
        using var _ = Tensor.NoGrad();
        Assert.Contains("interpolate_pos_encoding", Assert.Throws<ArgumentException>(() => m.Forward(ids, mask, big)).Message);
        Assert.Contains("one image per text", Assert.Throws<ArgumentException>(() => m.Forward(ids, mask, In("blip_itm", "pixel_values").Narrow(0, 0, 1))).Message);
        var bad = Tensor.FromArray(new long[] { 101, 500 }, 1, 2);
        Assert.Contains("vocab", Assert.Throws<ArgumentException>(() => m.Forward(bad, null, In("blip_itm", "pixel_values").Narrow(0, 0, 1))).Message);
        // cosine path: images × texts, any counts
        var (cos, _, _) = m.Forward(ids.Narrow(0, 0, 1), mask.Narrow(0, 0, 1), In("blip_itm", "cosine.pixel_values"), useItmHead: false);
        Assert.Equal(new[] { 2, 1 }, cos.ShapeArray());
    }

    [Fact]
    public void Fresh_models_initialise_and_run()
    {
        var cfg = BlipConfig.Load(Fixtures.Path("blip_caption", "config.json"));
        var vb = VarBuilder.Init(new Rng(1));
        var m = new BlipForConditionalGeneration(vb, cfg);
        var store = vb.Finish();
        Assert.Equal(Fixtures.Load("blip_caption", "model.safetensors").Keys.Append("text_decoder.cls.predictions.decoder.bias").Order(),
            store.Named.Select(kv => kv.Key).Order());
        m.Eval();
        using var _ = Tensor.NoGrad();
        var r = m.Generate(In("blip_caption", "pixel_values"), null, null, new GenerationOptions { MaxNewTokens = 3 });
        Assert.Equal(2, r.Sequences.Size(0));
    }
}
