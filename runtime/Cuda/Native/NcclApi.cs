using System.Runtime.InteropServices;

namespace ParallelCompiler.Runtime.Cuda.Native;

/// <summary>
/// The NCCL entry points the runtime uses (nccl.h), bound at run time from <c>libnccl.so.2</c>: the path in
/// <c>MPLC_NCCL_LIBRARY</c>, the system's library, or the one the Python package <c>nvidia-nccl-cu*</c> installs
/// under a site-packages directory. Each call's result is checked and a failure names the call and NCCL's message.
/// </summary>
public static unsafe class NcclApi
{
    private static readonly Lazy<IntPtr> s_library = new(Load);

    /// <summary>Where NCCL was found, or why not.</summary>
    public static bool Available(out string where)
    {
        try
        {
            where = s_library.Value == IntPtr.Zero ? "" : "loaded";
            return true;
        }
        catch (DllNotFoundException e)
        {
            where = e.Message;
            return false;
        }
    }

    private static IntPtr Load()
    {
        var candidates = new List<string>();
        if (Environment.GetEnvironmentVariable("MPLC_NCCL_LIBRARY") is { Length: > 0 } env)
            candidates.Add(env);
        candidates.Add("libnccl.so.2");
        candidates.Add("libnccl.so");
        string home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        foreach (var root in new[] { "/usr/lib", "/usr/local/lib", "/opt/conda/lib", Path.Combine(home, ".local/lib") })
        {
            if (!Directory.Exists(root))
                continue;
            foreach (var py in Directory.EnumerateDirectories(root, "python3*"))
            foreach (var packages in new[] { "site-packages", "dist-packages" })
                candidates.Add(Path.Combine(py, packages, "nvidia/nccl/lib/libnccl.so.2"));
        }
        foreach (var c in candidates)
            if ((!c.Contains('/') || File.Exists(c)) && NativeLibrary.TryLoad(c, out var handle))
                return handle;
        throw new DllNotFoundException(
            "NCCL (libnccl.so.2) not found: install it, or set MPLC_NCCL_LIBRARY to its path"
        );
    }

    private static IntPtr Export(string name) =>
        NativeLibrary.TryGetExport(s_library.Value, name, out var f)
            ? f
            : throw new EntryPointNotFoundException($"NCCL has no {name}");

    private static void Check(int result, string call)
    {
        if (result == 0)
            return;
        var text = ((delegate* unmanaged<int, IntPtr>)Export("ncclGetErrorString"))(result);
        throw new CudaException(call, (CUResult)result, Marshal.PtrToStringAnsi(text) ?? $"NCCL error {result}");
    }

    /// <summary>ncclCommInitAll: one communicator per device of <paramref name="devices"/>, rank k on
    /// devices[k].</summary>
    public static IntPtr[] CommInitAll(int[] devices)
    {
        var comms = new IntPtr[devices.Length];
        fixed (IntPtr* c = comms)
        fixed (int* d = devices)
            Check(
                ((delegate* unmanaged<IntPtr*, int, int*, int>)Export("ncclCommInitAll"))(c, devices.Length, d),
                "ncclCommInitAll"
            );
        return comms;
    }

    /// <summary>ncclGetUniqueId: the 128 bytes (NCCL_UNIQUE_ID_BYTES) that name a communicator to be made across
    /// processes.</summary>
    public static byte[] GetUniqueId()
    {
        var id = new UniqueId();
        Check(((delegate* unmanaged<UniqueId*, int>)Export("ncclGetUniqueId"))(&id), "ncclGetUniqueId");
        return new ReadOnlySpan<byte>(id.Bytes, UniqueId.Size).ToArray();
    }

    /// <summary>ncclCommInitRank: this process's member <paramref name="rank"/> of the <paramref name="ranks"/> of
    /// the communicator <paramref name="id"/> names, on the current context's GPU. Several members of one process
    /// are made between <see cref="GroupStart"/> and <see cref="GroupEnd"/>.</summary>
    public static IntPtr CommInitRank(int ranks, byte[] id, int rank)
    {
        if (id.Length != UniqueId.Size)
            throw new ArgumentException($"an NCCL unique id has {UniqueId.Size} bytes, got {id.Length}");
        var value = new UniqueId();
        id.CopyTo(new Span<byte>(value.Bytes, UniqueId.Size));
        IntPtr comm;
        Check(
            ((delegate* unmanaged<IntPtr*, int, UniqueId, int, int>)Export("ncclCommInitRank"))(
                &comm,
                ranks,
                value,
                rank
            ),
            "ncclCommInitRank"
        );
        return comm;
    }

    // ncclUniqueId: a struct of 128 chars, passed by value.
    [StructLayout(LayoutKind.Sequential, Size = Size)]
    private struct UniqueId
    {
        public const int Size = 128;
        public fixed byte Bytes[Size];
    }

    /// <summary>ncclCommAbort: the communicator's pending operations end without completing; it cannot be used
    /// again.</summary>
    public static void CommAbort(IntPtr comm) => ((delegate* unmanaged<IntPtr, int>)Export("ncclCommAbort"))(comm);

    /// <summary>ncclCommDestroy.</summary>
    public static void CommDestroy(IntPtr comm) => ((delegate* unmanaged<IntPtr, int>)Export("ncclCommDestroy"))(comm);

    /// <summary>ncclAllReduce on <paramref name="stream"/>.</summary>
    public static void AllReduce(ulong send, ulong recv, long count, int type, int op, IntPtr comm, IntPtr stream) =>
        Check(
            ((delegate* unmanaged<ulong, ulong, nuint, int, int, IntPtr, IntPtr, int>)Export("ncclAllReduce"))(
                send,
                recv,
                (nuint)count,
                type,
                op,
                comm,
                stream
            ),
            "ncclAllReduce"
        );

    /// <summary>ncclAllGather on <paramref name="stream"/>.</summary>
    public static void AllGather(ulong send, ulong recv, long sendCount, int type, IntPtr comm, IntPtr stream) =>
        Check(
            ((delegate* unmanaged<ulong, ulong, nuint, int, IntPtr, IntPtr, int>)Export("ncclAllGather"))(
                send,
                recv,
                (nuint)sendCount,
                type,
                comm,
                stream
            ),
            "ncclAllGather"
        );

    /// <summary>ncclReduceScatter on <paramref name="stream"/>.</summary>
    public static void ReduceScatter(
        ulong send,
        ulong recv,
        long recvCount,
        int type,
        int op,
        IntPtr comm,
        IntPtr stream
    ) =>
        Check(
            ((delegate* unmanaged<ulong, ulong, nuint, int, int, IntPtr, IntPtr, int>)Export("ncclReduceScatter"))(
                send,
                recv,
                (nuint)recvCount,
                type,
                op,
                comm,
                stream
            ),
            "ncclReduceScatter"
        );

    /// <summary>ncclSend on <paramref name="stream"/>.</summary>
    public static void Send(ulong buffer, long count, int type, int peer, IntPtr comm, IntPtr stream) =>
        Check(
            ((delegate* unmanaged<ulong, nuint, int, int, IntPtr, IntPtr, int>)Export("ncclSend"))(
                buffer,
                (nuint)count,
                type,
                peer,
                comm,
                stream
            ),
            "ncclSend"
        );

    /// <summary>ncclRecv on <paramref name="stream"/>.</summary>
    public static void Recv(ulong buffer, long count, int type, int peer, IntPtr comm, IntPtr stream) =>
        Check(
            ((delegate* unmanaged<ulong, nuint, int, int, IntPtr, IntPtr, int>)Export("ncclRecv"))(
                buffer,
                (nuint)count,
                type,
                peer,
                comm,
                stream
            ),
            "ncclRecv"
        );

    /// <summary>ncclGroupStart.</summary>
    public static void GroupStart() => Check(((delegate* unmanaged<int>)Export("ncclGroupStart"))(), "ncclGroupStart");

    /// <summary>ncclGroupEnd.</summary>
    public static void GroupEnd() => Check(((delegate* unmanaged<int>)Export("ncclGroupEnd"))(), "ncclGroupEnd");
}
