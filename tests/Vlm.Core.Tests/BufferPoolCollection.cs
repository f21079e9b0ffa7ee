namespace Vlm.Core.Tests;

/// <summary>Tests that count the buffer pool's fresh allocations (<c>BufferPool.ThreadFreshAllocations</c>). The pool is
/// process-wide, so a test running beside them can take a buffer they returned and make a warm run miss it; xunit runs
/// this collection alone, after the parallel ones.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class BufferPoolCollection
{
    public const string Name = "buffer pool counters";
}
