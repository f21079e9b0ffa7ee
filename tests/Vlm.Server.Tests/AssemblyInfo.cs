// One server at a time: the load test's figures and the batching test's window assume an otherwise idle process.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
