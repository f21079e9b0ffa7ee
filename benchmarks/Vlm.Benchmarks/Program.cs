using BenchmarkDotNet.Running;

namespace Vlm.Benchmarks;

/// <summary>BenchmarkDotNet entry point: `dotnet run -c Release --project benchmarks/Vlm.Benchmarks -- --filter '*Gemm*'`.
/// For quick side-by-side figures in the project's JSON format use `./vlm bench` instead.</summary>
public static class Program
{
    public static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
}
