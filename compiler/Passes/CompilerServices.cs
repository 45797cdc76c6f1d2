using Microsoft.Extensions.DependencyInjection;
using ParallelCompiler.Passes.Infrastructure;

namespace ParallelCompiler.Passes;

/// <summary>The compiler's services: every pass is registered here, by name.</summary>
public static class CompilerServices
{
    /// <summary>A provider with all passes and the pass registry.</summary>
    public static ServiceProvider Create()
    {
        var services = new ServiceCollection();
        services.AddPass<ShapeInference>();
        services.AddPass<Canonicalize>();
        services.AddPass<Cse>();
        services.AddPass<Dce>();
        services.AddPass<PipelineStages>();
        services.AddPass<PipelineTransfers>();
        services.AddPass<Microbatch>();
        services.AddPass<PipelineScatterGather>();
        services.AddPass<MixedPrecision>();
        services.AddPass<PipelineSchedule>();
        services.AddPass<FormKernels>();
        services.AddPass<Autodiff>();
        services.AddPass<Optimizer>();
        services.AddPass<ShardingPropagation>();
        services.AddPass<InsertReshards>();
        services.AddPass<Spmdize>();
        services.AddPass<ScheduleCollectives>();
        services.AddSingleton<PassRegistry>();
        return services.BuildServiceProvider();
    }
}
