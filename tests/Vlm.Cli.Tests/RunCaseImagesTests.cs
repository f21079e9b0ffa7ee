using Vlm.Core;
using Vlm.Core.IO;
using Vlm.TestSupport;

namespace Vlm.Cli.Tests;

public class RunCaseImagesTests
{
    [Fact]
    public void ImageFixture_WritesEveryRun_MatchingTheReference()
    {
        var src = Fixtures.Path("image_preprocessing");
        var outDir = Directory.CreateTempSubdirectory("vlm-runcase-images").FullName;
        try
        {
            Assert.True(RunCaseImages.TryRun(src, outDir));
            foreach (var run in Directory.GetDirectories(src).Select(Path.GetFileName).Where(d => d != "images"))
            {
                var want = SafeTensors.Load(Path.Combine(src, run!, "outputs.safetensors"));
                var got = SafeTensors.Load(Path.Combine(outDir, run!, "outputs.safetensors"));
                Assert.Equal(want.Keys.Order(), got.Keys.Order());
                foreach (var (k, w) in want)
                {
                    Assert.Equal(w.DType, got[k].DType);
                    TensorAssert.Close(w, got[k], atol: w.DType == DType.Float32 ? 1e-5f : 0, rtol: 0, what: $"{run}/{k}");
                }
            }
        }
        finally { Directory.Delete(outDir, true); }
    }

    [Fact]
    public void OtherFolders_AreNotImageCases()
    {
        Assert.False(RunCaseImages.TryRun(Fixtures.Path("bridgetower_model"), Path.GetTempPath()));
        Assert.False(RunCaseImages.TryRun(Path.Combine(Path.GetTempPath(), "no-such-folder-" + Guid.NewGuid()), Path.GetTempPath()));
    }
}
