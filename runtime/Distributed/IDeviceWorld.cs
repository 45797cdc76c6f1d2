using ParallelCompiler.Runtime.Arrays;

namespace ParallelCompiler.Runtime.Distributed;

/// <summary>
/// The devices of a mesh and the communicators between them, for one run of a program: the simulated CPU devices
/// of an <see cref="InProcessWorld"/>, several logical devices sharing one GPU, or one GPU per device.
/// </summary>
public interface IDeviceWorld<T> : IDisposable
    where T : class, IArray
{
    /// <summary>The mesh the devices form.</summary>
    DeviceMesh Mesh { get; }

    /// <summary>Runs <paramref name="body"/>(device, communicator) for every device, each on its own thread; results by
    /// rank.</summary>
    TResult[] Run<TResult>(Func<IDevice<T>, ICommunicator<T>, TResult> body);
}

/// <summary>The devices of an <see cref="InProcessWorld{T}"/>, each made by <paramref name="device"/> from its rank on
/// its own thread.</summary>
public sealed class InProcessDevices<T>(InProcessWorld<T> world, Func<int, IDevice<T>> device) : IDeviceWorld<T>
    where T : class, IArray
{
    /// <inheritdoc/>
    public DeviceMesh Mesh => world.Mesh;

    /// <inheritdoc/>
    public TResult[] Run<TResult>(Func<IDevice<T>, ICommunicator<T>, TResult> body)
    {
        ArgumentNullException.ThrowIfNull(body);
        return world.Run((rank, comm) => body(device(rank), comm));
    }

    /// <inheritdoc/>
    public void Dispose() => world.Dispose();
}
