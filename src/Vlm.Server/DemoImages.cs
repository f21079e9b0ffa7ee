using Vlm.Training.World;
using Vlm.Vision;
using Vlm.Vision.Codecs;

namespace Vlm.Server;

/// <summary>A few scenes from the synthetic world generator, rendered once as PNGs, so the page works with no upload.</summary>
public static class DemoImages
{
    public sealed record Demo(string Name, string Caption, byte[] Png);

    private const ulong Seed = 2024;
    private const int Count = 6;

    private static readonly Lazy<IReadOnlyList<Demo>> Items = new(() =>
    {
        var gen = new WorldGenerator(Seed, new WorldOptions { MinImageSize = 192, MaxImageSize = 192 });
        return Enumerable.Range(0, Count).Select(i =>
        {
            var s = gen.SampleScene(i);
            var png = PngEncoder.Encode(new Image(s.Width, s.Height, PixelMode.RGB, Renderer.Render(s)));
            return new Demo($"scene{i}", gen.Describe(s).Captions[0], png);
        }).ToList();
    });

    public static IReadOnlyList<Demo> All => Items.Value;

    public static Demo? Find(string name) => All.FirstOrDefault(d => d.Name == name);
}
