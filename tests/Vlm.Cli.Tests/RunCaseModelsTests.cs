using Vlm.Cli;
using Vlm.Core.IO;
using Vlm.TestSupport;

namespace Vlm.Cli.Tests;

public class RunCaseModelsTests
{
    [Fact]
    public void BridgeTower_case_writes_outputs_and_gradients_under_the_fixture_names()
    {
        var dir = Directory.CreateTempSubdirectory("bt-runcase-").FullName;
        try
        {
            var outPath = Path.Combine(dir, "out.safetensors");
            Assert.True(RunCaseModels.TryRun(Fixtures.Path("bridgetower_contrastive"), outPath));
            var got = SafeTensors.Load(outPath);
            var expected = Fixtures.Load("bridgetower_contrastive", "outputs.safetensors");
            Assert.Equal(expected.Keys.Order(), got.Keys.Order());
            foreach (var (k, e) in expected) TensorAssert.Close(e, got[k], 1e-4f, 1e-4f, k);
            var grads = SafeTensors.Load(Path.Combine(dir, "out.grads.safetensors"));
            foreach (var (k, e) in Fixtures.Load("bridgetower_contrastive", "grads.safetensors"))
                TensorAssert.Close(e, grads[k], 1e-4f, 1e-3f, k);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Other_folders_are_left_to_other_handlers()
    {
        Assert.False(RunCaseModels.TryRun(Fixtures.Path("tokenizers", "roberta"), Path.Combine(Path.GetTempPath(), "never.safetensors")));
    }
}
