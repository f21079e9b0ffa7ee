// CLI tests capture Console.Out/Error; parallel test classes would interleave their output.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
