using Antlr4.Runtime;
using ParallelCompiler.Syntax.Generated;

namespace ParallelCompiler.Syntax;

/// <summary>
/// Lexes and parses a .mpl file with the ANTLR-generated parser and builds the AST. Lexical problems (stray
/// characters, unterminated comments and strings, nesting too deep to be sane) are caught before parsing;
/// syntax errors are collected with ANTLR's recovery, so several are reported at once.
/// </summary>
public static class MplSyntax
{
    /// <summary>Deepest bracket nesting or run of unary minus accepted; deeper input is rejected with an error, not a
    /// stack overflow.</summary>
    public const int MaxNesting = 1000;

    /// <summary>Parses a file; returns null after reporting errors to <paramref name="diags"/>.</summary>
    public static ProgramNode? Parse(SourceText src, DiagnosticBag diags)
    {
        var lexer = new MplLexer(new AntlrInputStream(src.Text));
        lexer.RemoveErrorListeners();
        var tokens = new CommonTokenStream(lexer);
        tokens.Fill();
        if (!CheckTokens(src, tokens.GetTokens(), diags))
            return null;

        var parser = new MplParser(tokens);
        parser.RemoveErrorListeners();
        parser.AddErrorListener(new SyntaxErrorListener(src, diags));
        var tree = parser.program();
        if (diags.HasErrors)
            return null;
        try
        {
            return new AstBuilder(src).Build(tree);
        }
        catch (AstBuilder.SyntaxException e)
        {
            diags.Error(src, e.Span, e.Message);
            return null;
        }
    }

    private static bool CheckTokens(SourceText src, IList<IToken> tokens, DiagnosticBag diags)
    {
        int depth = 0,
            minusRun = 0;
        bool ok = true;
        for (int i = 0; i < tokens.Count; i++)
        {
            var t = tokens[i];
            var span = new TextSpan(t.StartIndex, Math.Max(1, t.StopIndex - t.StartIndex + 1));
            switch (t.Type)
            {
                case MplLexer.ERROR_CHAR:
                    int j = i;
                    while (
                        j + 1 < tokens.Count
                        && tokens[j + 1].Type == MplLexer.ERROR_CHAR
                        && tokens[j + 1].StartIndex == tokens[j].StopIndex + 1
                    )
                        j++;
                    string c = t.Text;
                    string shown =
                        c.Length == 1 && !char.IsControl(c[0]) && !char.IsSurrogate(c[0])
                            ? $"'{c}'"
                            : $"U+{(int)c[0]:X4}";
                    diags.Error(
                        src,
                        new TextSpan(t.StartIndex, tokens[j].StopIndex - t.StartIndex + 1),
                        j > i ? $"unexpected characters starting with {shown}" : $"unexpected character {shown}"
                    );
                    i = j;
                    ok = false;
                    break;
                case MplLexer.UNTERMINATED_COMMENT:
                    diags.Error(src, new TextSpan(t.StartIndex, 2), "unterminated comment: '/*' has no matching '*/'");
                    ok = false;
                    break;
                case MplLexer.UNTERMINATED_STRING:
                    diags.Error(src, span, "unterminated string: missing closing '\"'");
                    ok = false;
                    break;
            }
            string text = t.Type == TokenConstants.EOF ? "" : t.Text;
            if (text is "(" or "[" or "{")
                depth++;
            else if (text is ")" or "]" or "}")
                depth = Math.Max(0, depth - 1);
            minusRun = text == "-" ? minusRun + 1 : 0;
            if (depth > MaxNesting || minusRun > MaxNesting)
            {
                diags.Error(src, span, $"expression nested more than {MaxNesting} levels deep");
                return false;
            }
            if (diags.ErrorCount >= DiagnosticBag.MaxErrors)
                return false;
        }
        return ok;
    }

    private sealed class SyntaxErrorListener(SourceText src, DiagnosticBag diags) : IAntlrErrorListener<IToken>
    {
        public void SyntaxError(
            TextWriter output,
            IRecognizer recognizer,
            IToken offendingSymbol,
            int line,
            int charPositionInLine,
            string msg,
            RecognitionException e
        )
        {
            int start = offendingSymbol?.StartIndex ?? src.Offset(line, charPositionInLine + 1);
            int len =
                offendingSymbol == null || offendingSymbol.Type == TokenConstants.EOF
                    ? 1
                    : offendingSymbol.StopIndex - offendingSymbol.StartIndex + 1;
            if (start < 0)
                start = src.Text.Length;
            diags.Error(src, new TextSpan(start, Math.Max(1, len)), Friendly(msg));
        }

        // ANTLR says "<EOF>" and lists token names; keep its substance, in the project's words.
        private static string Friendly(string msg) =>
            "syntax error: "
            + msg.Replace("<EOF>", "end of file")
                .Replace("extraneous input", "unexpected")
                .Replace("mismatched input", "unexpected")
                .Replace("no viable alternative at input", "cannot parse");
    }
}
