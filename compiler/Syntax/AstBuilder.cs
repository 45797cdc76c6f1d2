using System.Globalization;
using System.Text;
using Antlr4.Runtime;
using ParallelCompiler.Syntax.Generated;
using P = ParallelCompiler.Syntax.Generated.MplParser;

namespace ParallelCompiler.Syntax;

/// <summary>Turns the ANTLR parse tree into the immutable AST with source spans.</summary>
internal sealed class AstBuilder(SourceText src)
{
    internal sealed class SyntaxException(TextSpan span, string message) : Exception(message)
    {
        public TextSpan Span { get; } = span;
    }

    public ProgramNode Build(P.ProgramContext ctx) => new(src, ctx.decl().Select(Decl).ToList());

    private static TextSpan Span(ParserRuleContext c) =>
        new(c.Start.StartIndex, Math.Max(1, (c.Stop ?? c.Start).StopIndex - c.Start.StartIndex + 1));

    private static TextSpan Span(IToken t) => new(t.StartIndex, Math.Max(1, t.StopIndex - t.StartIndex + 1));

    private Decl Decl(P.DeclContext d)
    {
        if (d.constDecl() is { } c)
            return new ConstDecl(Span(c), c.name.Text, Span(c.name), Expr(c.expr()));
        if (d.meshDecl() is { } m)
            return new MeshDecl(
                Span(m),
                m.name.Text,
                Span(m.name),
                m.meshAxis().Select(a => new MeshAxis(Span(a), a.name.Text, Expr(a.expr()))).ToList()
            );
        if (d.trainDecl() is { } t)
            return new TrainDecl(
                Span(t),
                t.model.Text,
                Span(t.model),
                t.opt.Text,
                Span(t.opt),
                t.namedArg().Select(NamedArg).ToList(),
                t.prec?.Text,
                t.prec == null ? default : Span(t.prec)
            );
        var b = d.blockDecl();
        var attrs = b.attribute()
            .Select(a => new AttributeNode(Span(a), a.name.Text, a.namedArg().Select(NamedArg).ToList()))
            .ToList();
        var args = b.argDecl().Select(a => new ArgDecl(Span(a), a.name.Text, Type(a.type()))).ToList();
        var block = b.block();
        return new BlockDecl(
            Span(b),
            b.name.Text,
            Span(b.name),
            b.kind.Type == MplLexer.MODEL,
            attrs,
            args,
            Type(b.type()),
            Block(block),
            Span(block.Stop)
        );
    }

    private Arg NamedArg(P.NamedArgContext a) => new(Span(a), a.name.Text, Expr(a.value));

    private TypeNode Type(P.TypeContext t) =>
        new(
            Span(t),
            t.dtype.Text,
            Span(t.dtype),
            t.expr().Select(Expr).ToList(),
            t.sharding() is { } s ? Shard(Span(s), s.shardDim()) : null
        );

    private static ShardSpec Shard(TextSpan span, P.ShardDimContext[] dims) =>
        new(
            span,
            dims.Select(d =>
                    d switch
                    {
                        P.ShardAxisContext a => new ShardDim(
                            Span(a),
                            a.ID().GetText() == "_" ? [] : [a.ID().GetText()]
                        ),
                        P.ShardAxesContext g => new ShardDim(Span(g), g.ID().Select(i => i.GetText()).ToList()),
                        _ => throw new InvalidOperationException("unknown shard dimension form"),
                    }
                )
                .ToList()
        );

    private List<Stmt> Block(P.BlockContext b) => b.stmt().Select(Stmt).ToList();

    private Stmt Stmt(P.StmtContext s) =>
        s switch
        {
            P.ParamStmtContext p => new ParamStmt(
                Span(p),
                p.name.Text,
                Span(p.name),
                Type(p.type()),
                p.init is null ? null : Expr(p.init)
            ),
            P.LetStmtContext l => new LetStmt(Span(l), l.name.Text, Span(l.name), Expr(l.expr())),
            P.AssignStmtContext a => new AssignStmt(Span(a), a.name.Text, Span(a.name), Expr(a.expr())),
            P.ForStmtContext f => new ForStmt(Span(f), f.var.Text, Expr(f.lo), Expr(f.hi), Block(f.block())),
            P.StageStmtContext st => new StageStmt(Span(st)),
            P.ReturnStmtContext r => new ReturnStmt(Span(r), Expr(r.expr())),
            _ => throw new InvalidOperationException("unknown statement form"),
        };

    private Expr Expr(P.ExprContext e)
    {
        switch (e)
        {
            case P.NegExprContext n:
                return new NegExpr(Span(n), Expr(n.expr()));
            case P.PrimaryExprContext p:
                return Primary(p.primary());
            case P.MulExprContext or P.AddExprContext:
                // Left-associative chains are walked iteratively, so a long a + b + c + ... cannot exhaust the stack
                // here.
                var spine = new Stack<ParserRuleContext>();
                P.ExprContext cur = e;
                while (cur is P.MulExprContext or P.AddExprContext)
                {
                    spine.Push(cur);
                    cur = cur.GetRuleContext<P.ExprContext>(0);
                }
                if (spine.Count > MplSyntax.MaxNesting)
                    throw new SyntaxException(
                        Span(e),
                        $"expression has more than {MplSyntax.MaxNesting} chained operators; split it with let"
                    );
                Expr acc = Expr(cur);
                while (spine.Count > 0)
                {
                    var c = spine.Pop();
                    var op = c is P.MulExprContext m ? m.op : ((P.AddExprContext)c).op;
                    var right = Expr(c.GetRuleContext<P.ExprContext>(1));
                    acc = new BinaryExpr(Span(c), op.Text, Span(op), acc, right);
                }
                return acc;
            default:
                throw new InvalidOperationException("unknown expression form");
        }
    }

    private Expr Primary(P.PrimaryContext p)
    {
        var span = Span(p);
        switch (p)
        {
            case P.IntLitContext i:
                if (!long.TryParse(i.GetText(), NumberStyles.None, CultureInfo.InvariantCulture, out long v))
                    throw new SyntaxException(span, $"integer literal {i.GetText()} does not fit in 64 bits");
                return new IntLit(span, v);
            case P.FloatLitContext f:
                double d = double.Parse(f.GetText(), NumberStyles.Float, CultureInfo.InvariantCulture);
                if (double.IsInfinity(d))
                    throw new SyntaxException(span, $"float literal {f.GetText()} is out of range");
                return new FloatLit(span, d);
            case P.BoolLitContext b:
                return new BoolLit(span, b.TRUE() != null);
            case P.StringLitContext s:
                return new StringLit(span, Unescape(s.GetText(), span));
            case P.CallExprContext c:
                return new CallExpr(
                    span,
                    c.callee.Text,
                    Span(c.callee),
                    c.arg()
                        .Select(a => a.namedArg() is { } na ? NamedArg(na) : new Arg(Span(a), null, Expr(a.expr())))
                        .ToList()
                );
            case P.NameExprContext n:
                return new NameExpr(span, n.GetText());
            case P.ParenExprContext pe:
                return Expr(pe.expr());
            case P.ListExprContext l:
                return new ListExpr(span, l.expr().Select(Expr).ToList());
            case P.ShardExprContext se:
                return new ShardExpr(span, Shard(span, se.shardDim()));
            default:
                throw new InvalidOperationException("unknown primary form");
        }
    }

    private static string Unescape(string quoted, TextSpan span)
    {
        var sb = new StringBuilder();
        for (int i = 1; i < quoted.Length - 1; i++)
        {
            char c = quoted[i];
            if (c != '\\')
            {
                sb.Append(c);
                continue;
            }
            char e = quoted[++i];
            sb.Append(
                e switch
                {
                    'n' => '\n',
                    't' => '\t',
                    '\\' => '\\',
                    '"' => '"',
                    _ => throw new SyntaxException(
                        new TextSpan(span.Start + i - 1, 2),
                        $"unknown escape '\\{e}' in string"
                    ),
                }
            );
        }
        return sb.ToString();
    }
}
