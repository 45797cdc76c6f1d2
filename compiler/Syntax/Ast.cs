namespace ParallelCompiler.Syntax;

// The abstract syntax tree of a .mpl file. Immutable; every node keeps its source span for diagnostics.

/// <summary>Base of all AST nodes.</summary>
public abstract record Node(TextSpan Span);

/// <summary>Base of expressions.</summary>
public abstract record Expr(TextSpan Span) : Node(Span);

/// <summary>An integer literal.</summary>
public sealed record IntLit(TextSpan Span, long Value) : Expr(Span);

/// <summary>A float literal.</summary>
public sealed record FloatLit(TextSpan Span, double Value) : Expr(Span);

/// <summary>true or false.</summary>
public sealed record BoolLit(TextSpan Span, bool Value) : Expr(Span);

/// <summary>A string literal (unescaped).</summary>
public sealed record StringLit(TextSpan Span, string Value) : Expr(Span);

/// <summary>A name: a local, a loop variable, a const or a mesh axis.</summary>
public sealed record NameExpr(TextSpan Span, string Name) : Expr(Span);

/// <summary>Unary minus.</summary>
public sealed record NegExpr(TextSpan Span, Expr Operand) : Expr(Span);

/// <summary>A binary operator: + - * / % @.</summary>
public sealed record BinaryExpr(TextSpan Span, string Op, TextSpan OpSpan, Expr Left, Expr Right) : Expr(Span);

/// <summary>A list literal <c>[a, b]</c>.</summary>
public sealed record ListExpr(TextSpan Span, IReadOnlyList<Expr> Items) : Expr(Span);

/// <summary>A sharding literal <c>shard[dp, _]</c> (the argument of reshard).</summary>
public sealed record ShardExpr(TextSpan Span, ShardSpec Spec) : Expr(Span);

/// <summary>An argument of a call, optionally named.</summary>
public sealed record Arg(TextSpan Span, string? Name, Expr Value) : Node(Span);

/// <summary>A call of a layer or a built-in.</summary>
public sealed record CallExpr(TextSpan Span, string Callee, TextSpan CalleeSpan, IReadOnlyList<Arg> Args) : Expr(Span);

/// <summary>One dimension of a sharding: the mesh axes it is split over (empty for <c>_</c>).</summary>
public sealed record ShardDim(TextSpan Span, IReadOnlyList<string> Axes) : Node(Span);

/// <summary>A <c>shard[...]</c> annotation.</summary>
public sealed record ShardSpec(TextSpan Span, IReadOnlyList<ShardDim> Dims) : Node(Span);

/// <summary>A tensor type <c>f32[B, D] shard[dp, _]</c>.</summary>
public sealed record TypeNode(
    TextSpan Span,
    string DType,
    TextSpan DTypeSpan,
    IReadOnlyList<Expr> Dims,
    ShardSpec? Shard
) : Node(Span);

/// <summary>Base of statements.</summary>
public abstract record Stmt(TextSpan Span) : Node(Span);

/// <summary><c>param w: T = init;</c></summary>
public sealed record ParamStmt(TextSpan Span, string Name, TextSpan NameSpan, TypeNode Type, Expr? Init) : Stmt(Span);

/// <summary><c>let x = e;</c></summary>
public sealed record LetStmt(TextSpan Span, string Name, TextSpan NameSpan, Expr Value) : Stmt(Span);

/// <summary><c>x = e;</c></summary>
public sealed record AssignStmt(TextSpan Span, string Name, TextSpan NameSpan, Expr Value) : Stmt(Span);

/// <summary><c>for i in lo..hi { ... }</c></summary>
public sealed record ForStmt(TextSpan Span, string Var, Expr Lo, Expr Hi, IReadOnlyList<Stmt> Body) : Stmt(Span);

/// <summary><c>stage;</c></summary>
public sealed record StageStmt(TextSpan Span) : Stmt(Span);

/// <summary><c>return e;</c></summary>
public sealed record ReturnStmt(TextSpan Span, Expr Value) : Stmt(Span);

/// <summary>Base of top-level declarations.</summary>
public abstract record Decl(TextSpan Span, string Name, TextSpan NameSpan) : Node(Span);

/// <summary><c>const N = e;</c></summary>
public sealed record ConstDecl(TextSpan Span, string Name, TextSpan NameSpan, Expr Value) : Decl(Span, Name, NameSpan);

/// <summary>One axis of a mesh declaration.</summary>
public sealed record MeshAxis(TextSpan Span, string Name, Expr Size) : Node(Span);

/// <summary><c>mesh grid[a = 2, b = 4];</c></summary>
public sealed record MeshDecl(TextSpan Span, string Name, TextSpan NameSpan, IReadOnlyList<MeshAxis> Axes)
    : Decl(Span, Name, NameSpan);

/// <summary>An <c>@name(key = value, ...)</c> attribute.</summary>
public sealed record AttributeNode(TextSpan Span, string Name, IReadOnlyList<Arg> Args) : Node(Span);

/// <summary>An argument of a layer or model.</summary>
public sealed record ArgDecl(TextSpan Span, string Name, TypeNode Type) : Node(Span);

/// <summary>A <c>layer</c> or <c>model</c> declaration.</summary>
public sealed record BlockDecl(
    TextSpan Span,
    string Name,
    TextSpan NameSpan,
    bool IsModel,
    IReadOnlyList<AttributeNode> Attributes,
    IReadOnlyList<ArgDecl> Args,
    TypeNode Result,
    IReadOnlyList<Stmt> Body,
    TextSpan EndSpan
) : Decl(Span, Name, NameSpan);

/// <summary><c>train f optimizer adam(lr = 3e-4) precision bf16;</c> (<see cref="Precision"/> null: the types as
/// written).</summary>
public sealed record TrainDecl(
    TextSpan Span,
    string Name,
    TextSpan NameSpan,
    string Optimizer,
    TextSpan OptimizerSpan,
    IReadOnlyList<Arg> Args,
    string? Precision = null,
    TextSpan PrecisionSpan = default
) : Decl(Span, Name, NameSpan);

/// <summary>A whole file.</summary>
public sealed record ProgramNode(SourceText Source, IReadOnlyList<Decl> Decls);
