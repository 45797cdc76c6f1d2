using ParallelCompiler.Runtime.Model;

namespace ParallelCompiler.Runtime.Gpu;

/// <summary>Opens the GPU back ends by name, as <c>--backend</c> spells them.</summary>
public static class GpuMachines
{
    /// <summary>
    /// <c>cuda</c>: the PTX at <paramref name="ptxPath"/> on this machine's GPUs (<paramref name="gpus"/> of them,
    /// default all); <c>cuda-emu</c>: <paramref name="gpus"/> (default 1) emulated GPUs running the host-grid
    /// library at <paramref name="gridLibraryPath"/>. <paramref name="timeKernels"/> times every launch (for profiles).
    /// </summary>
    public static GpuMachine Open(
        string backend,
        string ptxPath,
        string gridLibraryPath,
        IEnumerable<KernelInfo> kernels,
        int? gpus,
        bool timeKernels = false
    ) =>
        backend switch
        {
            "cuda" => GpuMachine.OpenCuda(File.ReadAllText(ptxPath), kernels, gpus, timeKernels),
            "cuda-emu" => GpuMachine.OpenEmulated(gridLibraryPath, kernels, gpus ?? 1, timeKernels),
            _ => throw new RunInputException($"not a GPU back end: '{backend}'"),
        };
}
